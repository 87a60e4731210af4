"""SenseVoice's front end: what FunASR's `WavFrontend` computes, in plain torch.

FunASR turns 16 kHz audio into encoder input in three steps, all reproduced here:

1. Kaldi filterbanks, `torchaudio.compliance.kaldi.fbank` with FunASR's arguments (the samples
   scaled by 32768 first, as `upsacle_samples` does): 25 ms frames every 10 ms cut with snip_edges,
   each frame's DC offset removed, pre-emphasis 0.97 (the first sample against itself), a
   symmetric Hamming window (0.54 - 0.46 cos), zero padding to 512 samples, the power spectrum,
   Kaldi's triangular mel bins (mel = 1127 ln(1 + f/700), 20 Hz to Nyquist, the last FFT bin
   unused) and the log floored at float32's epsilon. `energy_floor` is 0 and no energy column is
   added. Dither is always 0: FunASR's `WavFrontend` defaults to 1.0 (Gaussian noise of one LSB)
   when config.yaml names none, which makes decoding random; its ONNX runtime and every port we
   know of run without it, and so do we.
2. Low frame rate (`apply_lfr`): the first frame repeated (lfr_m - 1) // 2 times in front, then
   every lfr_n-th frame stacked with the lfr_m - 1 after it (the last frame repeated past the
   end): 80 x 7 = 560 features every 60 ms.
3. Global CMVN from `am.mvn` (Kaldi nnet text: `<AddShift>` holds minus the means, `<Rescale>`
   the inverse deviations): (x + shift) * scale.

A clip shorter than one frame gets one frame as long as the clip (FunASR shortens
`frame_length` to the clip), and one under two samples gets none.
"""

from __future__ import annotations

import functools
import math
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: float32's machine epsilon: Kaldi's floor under the log of a mel energy.
EPSILON = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class FrontendConfig:
    """`frontend_conf` of config.yaml (FunASR's `WavFrontend` arguments and defaults)."""

    fs: int = 16000
    window: str = "hamming"
    n_mels: int = 80
    frame_length: float = 25.0
    frame_shift: float = 10.0
    lfr_m: int = 1
    lfr_n: int = 1
    #: FunASR's spelling: scale samples in [-1, 1] to 16-bit range before the fbank.
    upsacle_samples: bool = True

    @classmethod
    def from_conf(cls, conf: dict[str, Any] | None) -> FrontendConfig:
        conf = conf or {}
        if not conf.get("snip_edges", True):
            raise ValueError("frontend_conf.snip_edges: false is not supported")
        known = {name: conf[name] for name in cls.__dataclass_fields__ if name in conf}
        return cls(**known)

    @property
    def output_size(self) -> int:
        return self.n_mels * self.lfr_m


def mel_scale(freq: np.ndarray | float) -> np.ndarray | float:
    """Kaldi's mel scale (MelBanks::MelScale)."""
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def mel_banks(
    num_bins: int, padded_window: int, sample_freq: float, low_freq: float = 20.0
) -> torch.Tensor:
    """Kaldi's triangular mel filters, (num_bins, padded_window // 2 + 1), zero on the last FFT
    bin (torchaudio's get_mel_banks padded by one column), high frequency at Nyquist."""
    high_freq = 0.5 * sample_freq
    mel_low, mel_high = float(mel_scale(low_freq)), float(mel_scale(high_freq))
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = np.arange(num_bins, dtype=np.float64)[:, None]
    left, center, right = (mel_low + (bins + k) * delta for k in (0.0, 1.0, 2.0))
    fft_mel = mel_scale(sample_freq / padded_window * np.arange(padded_window // 2))[None, :]
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    weights = np.pad(weights, ((0, 0), (0, 1)))
    return torch.from_numpy(weights.astype(np.float32))


def window_function(kind: str, size: int) -> torch.Tensor:
    """Kaldi's frame windows (FeatureWindowFunction), symmetric."""
    if kind == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46)
    if kind == "hanning":
        return torch.hann_window(size, periodic=False)
    if kind == "povey":
        return torch.hann_window(size, periodic=False).pow(0.85)
    if kind == "rectangular":
        return torch.ones(size)
    raise ValueError(f"unsupported window type {kind!r}")


def kaldi_fbank(
    waveform: torch.Tensor,
    *,
    num_mel_bins: int = 80,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    sample_frequency: float = 16000.0,
    window_type: str = "hamming",
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
) -> torch.Tensor:
    """Log mel filterbanks of a 1-D float32 waveform (already scaled to 16-bit range):
    torchaudio.compliance.kaldi.fbank with snip_edges, remove_dc_offset, use_power,
    use_log_fbank, dither 0 and no energy. Returns (frames, num_mel_bins), float32."""
    window_shift = int(sample_frequency * frame_shift * 0.001)
    window_size = int(sample_frequency * frame_length * 0.001)
    if window_size < 2 or waveform.numel() < window_size:
        return torch.zeros((0, num_mel_bins), dtype=torch.float32)
    padded = 1 << (window_size - 1).bit_length()
    count = 1 + (waveform.numel() - window_size) // window_shift
    frames = waveform.float().unfold(0, window_size, window_shift)[:count]
    frames = frames - frames.mean(dim=1, keepdim=True)
    if preemphasis != 0.0:
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - preemphasis * previous
    frames = frames * window_function(window_type, window_size)
    frames = torch.nn.functional.pad(frames, (0, padded - window_size))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    energies = power @ mel_banks(num_mel_bins, padded, float(sample_frequency), low_freq).T
    return energies.clamp_min(EPSILON).log()


def apply_lfr(features: torch.Tensor, lfr_m: int, lfr_n: int) -> torch.Tensor:
    """FunASR's low frame rate: ceil(T / lfr_n) rows of lfr_m stacked frames, starting
    (lfr_m - 1) // 2 frames before the first (which is repeated there), the last frame repeated
    past the end."""
    count, dim = features.shape
    if count == 0:
        return features.new_zeros((0, dim * lfr_m))
    rows = math.ceil(count / lfr_n)
    left = (lfr_m - 1) // 2
    index = torch.arange(rows)[:, None] * lfr_n + torch.arange(lfr_m)[None, :] - left
    index = index.clamp(0, count - 1)
    return features[index].reshape(rows, lfr_m * dim)


def load_cmvn(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) from a Kaldi nnet text file (am.mvn), read as FunASR's load_cmvn reads it:
    the numbers of the `<LearnRateCoef>` line after `<AddShift>` and after `<Rescale>`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[str, np.ndarray] = {}
    for i, line in enumerate(lines):
        words = line.split()
        if words and words[0] in ("<AddShift>", "<Rescale>") and i + 1 < len(lines):
            values = lines[i + 1].split()
            if values and values[0] == "<LearnRateCoef>":
                found[words[0]] = np.array(values[3:-1], dtype=np.float32)
    if "<AddShift>" not in found or "<Rescale>" not in found:
        raise ValueError(f"{path} holds no <AddShift> and <Rescale> vectors (Kaldi nnet text)")
    return found["<AddShift>"], found["<Rescale>"]


def write_cmvn(path: pathlib.Path, shift: np.ndarray, scale: np.ndarray) -> None:
    """Writes (shift, scale) as a Kaldi nnet text file in am.mvn's layout."""
    dim = len(shift)

    def vector(values: np.ndarray) -> str:
        return "<LearnRateCoef> 0 [ " + " ".join(f"{v:.6g}" for v in values) + " ]"

    path.write_text(
        "\n".join(
            [
                "<Nnet>",
                f"<Splice> {dim} {dim}",
                "[ 0 ]",
                f"<AddShift> {dim} {dim}",
                vector(shift),
                f"<Rescale> {dim} {dim}",
                vector(scale),
                "</Nnet>",
                "",
            ]
        ),
        encoding="utf-8",
    )


class Frontend:
    """Audio (float32 mono in [-1, 1] at `config.fs`) to SenseVoice's encoder input."""

    def __init__(self, config: FrontendConfig, cmvn: tuple[np.ndarray, np.ndarray] | None):
        self.config = config
        self.shift = self.scale = None
        if cmvn is not None:
            shift, scale = cmvn
            if len(shift) != config.output_size or len(scale) != config.output_size:
                raise ValueError(
                    f"am.mvn has {len(shift)} dimensions; the front end gives"
                    f" {config.output_size} ({config.n_mels} mel bins x lfr_m {config.lfr_m})"
                )
            self.shift, self.scale = torch.from_numpy(shift), torch.from_numpy(scale)

    @property
    def output_size(self) -> int:
        return self.config.output_size

    @property
    def frame_seconds(self) -> float:
        """Seconds between two encoder frames (60 ms for SenseVoice)."""
        return self.config.frame_shift * self.config.lfr_n / 1000

    def __call__(self, audio: np.ndarray) -> torch.Tensor:
        """(frames, output_size) float32 features."""
        config = self.config
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio must be mono samples (1-D), not of shape {samples.shape}")
        waveform = torch.from_numpy(samples)
        if config.upsacle_samples:
            waveform = waveform * 32768.0
        frame_length = min(config.frame_length, waveform.numel() / config.fs * 1000)
        features = kaldi_fbank(
            waveform,
            num_mel_bins=config.n_mels,
            frame_length=frame_length,
            frame_shift=config.frame_shift,
            sample_frequency=config.fs,
            window_type=config.window,
        )
        if config.lfr_m != 1 or config.lfr_n != 1:
            features = apply_lfr(features, config.lfr_m, config.lfr_n)
        if self.shift is not None:
            features = (features + self.shift) * self.scale
        return features
