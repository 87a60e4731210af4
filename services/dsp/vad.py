"""Silero VAD v5/v6 as a stateless, batchable torch module, plus speech-region helpers.

The network is a port of the reference `silero_vad/tinygrad_model.py`. Unlike the package's
JIT model, the recurrent state is passed in and returned, so one instance serves many streams
and steps of many streams can run as one batch.

The weights come from the package's `silero_vad.jit` (the model `load_silero_vad()` returns),
not from its `silero_vad_16k.safetensors`: in silero-vad 6.2.x that file holds different,
older weights (only the STFT basis is shared), so its probabilities differ from the official
model's by up to ~0.7 on real speech (snakers4/silero-vad#768).
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz
CONTEXT_SAMPLES = 64  # samples of the previous step that precede each frame
HIDDEN = 128
_N_FFT = 256
_BINS = _N_FFT // 2 + 1
_ENCODE_BLOCK = 4096  # frames encoded at once by speech_probs, to bound memory
# Modules of the JIT model's 16 kHz network (`_model.*`) -> modules of SileroVad.
_JIT_MODULES = {
    "stft": "stft_conv",
    "encoder.0.reparam_conv": "conv1",
    "encoder.1.reparam_conv": "conv2",
    "encoder.2.reparam_conv": "conv3",
    "encoder.3.reparam_conv": "conv4",
    "decoder.rnn": "lstm_cell",
    "decoder.decoder.2": "final_conv",
}


def _load_weights() -> dict[str, Tensor]:
    """The 16 kHz weights of the package's JIT model, named as SileroVad's parameters."""
    # Importing silero_vad (even silero_vad.data) runs its __init__, which calls
    # torch.set_num_threads(1) for the whole process; only locate the package instead.
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the silero-vad package is not installed")
    path = Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.jit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load
        jit = torch.jit.load(str(path), map_location="cpu")
    weights = {}
    for name, tensor in jit.state_dict().items():
        if name.startswith("_model."):
            module, _, param = name.removeprefix("_model.").rpartition(".")
            param = "weight" if param == "forward_basis_buffer" else param
            weights[f"{_JIT_MODULES[module]}.{param}"] = tensor
    return weights


class SileroVad(nn.Module):
    """Silero VAD at 16 kHz: one speech probability per 512-sample frame."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 2 * _BINS, _N_FFT, stride=_N_FFT // 2, bias=False)
        self.conv1 = nn.Conv1d(_BINS, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, HIDDEN, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(HIDDEN, HIDDEN)
        self.final_conv = nn.Conv1d(HIDDEN, 1, 1)

    @classmethod
    def load(cls) -> SileroVad:
        model = cls()
        model.load_state_dict(_load_weights())
        return model.eval()

    def initial_state(self, batch: int = 1) -> tuple[Tensor, Tensor]:
        """Zero context (batch, 64) and zero LSTM state (2, batch, 128) for new streams."""
        device = self.final_conv.weight.device
        return (
            torch.zeros(batch, CONTEXT_SAMPLES, device=device),
            torch.zeros(2, batch, HIDDEN, device=device),
        )

    def forward(
        self, frames: Tensor, context: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step for a batch of streams.

        frames (B, 512), context (B, 64), state (2, B, 128) -> probs (B,), new context, new state.
        """
        windows = torch.cat([context, frames], dim=1)
        h, c = self.lstm_cell(self._encode(windows), (state[0], state[1]))
        return self._decode(h), windows[:, -CONTEXT_SAMPLES:], torch.stack([h, c])

    def speech_probs(self, audio: np.ndarray) -> np.ndarray:
        """One probability per frame of a whole 16 kHz mono signal (last frame zero-padded)."""
        n_frames = math.ceil(len(audio) / FRAME_SAMPLES)
        if n_frames == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            device = self.final_conv.weight.device
            signal = torch.as_tensor(audio, dtype=torch.float32, device=device)
            signal = F.pad(signal, (CONTEXT_SAMPLES, n_frames * FRAME_SAMPLES - len(signal)))
            windows = signal.unfold(0, CONTEXT_SAMPLES + FRAME_SAMPLES, FRAME_SAMPLES)
            # The convolutional front end has no state, so all frames are encoded at once; only the
            # LSTM cell has to step through time.
            features = torch.cat([self._encode(block) for block in windows.split(_ENCODE_BLOCK)])
            h, c = self.initial_state()[1]
            hidden = []
            for feature in features.split(1):
                h, c = self.lstm_cell(feature, (h, c))
                hidden.append(h)
            return self._decode(torch.cat(hidden)).float().cpu().numpy()

    def _encode(self, windows: Tensor) -> Tensor:
        """(B, 576) samples -> (B, 128) features for the LSTM cell."""
        x = F.pad(windows.unsqueeze(1), (0, CONTEXT_SAMPLES), mode="reflect")
        x = self.stft_conv(x)
        x = torch.sqrt(x[:, :_BINS] ** 2 + x[:, _BINS:] ** 2)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return F.relu(self.conv4(x)).squeeze(-1)

    def _decode(self, h: Tensor) -> Tensor:
        """(B, 128) LSTM output -> (B,) speech probabilities."""
        return torch.sigmoid(self.final_conv(F.relu(h).unsqueeze(-1))).mean(dim=(1, 2))


@dataclass
class SpeechRegion:
    start: float  # seconds
    end: float


def speech_regions(
    probs: np.ndarray,
    *,
    threshold: float = 0.5,
    neg_threshold: float | None = None,
    min_speech: float = 0.25,
    min_silence: float = 0.1,
    pad: float = 0.1,
    duration: float,
) -> list[SpeechRegion]:
    """Speech regions (seconds) from frame probabilities, with silero's hysteresis.

    Speech starts at a frame with p >= threshold and ends once p has stayed below neg_threshold
    (default threshold - 0.15) for min_silence seconds; regions no longer than min_speech are
    dropped, as silero does. Regions are then padded by `pad` on both sides, clamped to
    [0, duration] and merged where they overlap.
    """
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    frame = FRAME_SAMPLES / SAMPLE_RATE
    raw: list[tuple[float, float]] = []
    start: float | None = None
    silence_start: float | None = None
    for i, p in enumerate(probs):
        t = i * frame
        if p >= threshold:
            silence_start = None
            if start is None:
                start = t
        elif start is not None and p < neg_threshold:
            if silence_start is None:
                silence_start = t
            if t - silence_start >= min_silence:
                raw.append((start, silence_start))
                start = silence_start = None
    if start is not None:
        raw.append((start, duration))

    regions: list[SpeechRegion] = []
    for begin, end in raw:
        if end - begin <= min_speech:
            continue
        begin, end = max(0.0, begin - pad), min(duration, end + pad)
        if regions and begin <= regions[-1].end:
            regions[-1].end = max(regions[-1].end, end)
        else:
            regions.append(SpeechRegion(begin, end))
    return regions


def chunk_regions(
    regions: list[SpeechRegion], *, max_chunk: float = 30.0, duration: float
) -> list[tuple[float, float]]:
    """Group consecutive speech regions into (start, end) chunks of at most max_chunk seconds.

    Regions are merged greedily, as in WhisperX / faster-whisper batched mode; a region longer
    than max_chunk is split into equal pieces. Chunks are clamped to [0, duration].
    """
    chunks: list[tuple[float, float]] = []
    current: tuple[float, float] | None = None
    for region in regions:
        start, end = max(0.0, region.start), min(duration, region.end)
        if current is not None and end - current[0] <= max_chunk:
            current = (current[0], end)
            continue
        if current is not None:
            chunks.append(current)
        pieces = math.ceil((end - start) / max_chunk)
        if pieces <= 1:
            current = (start, end)
            continue
        step = (end - start) / pieces
        chunks.extend((start + k * step, start + (k + 1) * step) for k in range(pieces - 1))
        current = (start + (pieces - 1) * step, end)
    if current is not None:
        chunks.append(current)
    return chunks


async def speech_windows(
    vad: SileroVad, audio: np.ndarray, duration: float, window: float
) -> list[tuple[float, float]]:
    """(start, end) windows of at most `window` seconds for a whole recording of `duration`
    seconds (16 kHz for the VAD): the recording itself when it fits one, else its speech regions
    (VAD off the event loop) packed into chunks, as long recordings are recognized and
    translated."""
    if duration <= window:
        return [(0.0, duration)]
    probs = await asyncio.to_thread(vad.speech_probs, audio)
    regions = speech_regions(probs, duration=duration)
    return chunk_regions(regions, max_chunk=window, duration=duration)
