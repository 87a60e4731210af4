"""VITS through transformers (MMS-TTS and other `VitsModel` checkpoints): preset voices only.

VITS is non-autoregressive: one forward pass turns a batch of sentences into waveforms. It
cannot clone a voice; a multi-speaker checkpoint has one preset voice per speaker id
("speaker-0", ...), a single-speaker one has "default". Its language is the tokenizer's
`language` (MMS-TTS checkpoints speak one language each and name it with an ISO 639-3 code,
"eng", "ara"), given as BCP-47 ("en", "ar": the ISO 639-1 code where one exists); "en" when the
tokenizer names none. Requests may name it either way ("ar" or "ara").

Text. What the voice cannot say is never dropped silently (speechmesh.tts.engines.vits_text):
a voice that needs uroman, or phonemizer and espeak-ng, is refused at load when they are
missing; English numbers and symbols are spelled out for character voices; anything else the
voice cannot say is INVALID_ARGUMENT naming the characters.

Noise and seeds. VITS samples Gaussian noise twice per forward: for the stochastic duration
predictor (scaled by `noise_scale_duration`) and for the prior latents (`noise_scale`), both
from torch's global generator. Here every draw inside the forward is intercepted (a
`TorchFunctionMode`, which is thread-local) and replaced by noise from each job's own
generator, seeded with the job's seed and the draw's index, drawn time step by time step, so
a row's noise does not depend on the batch's other rows, its padded length or other threads.

Temperature is VITS's `noise_scale` (0.667 in MMS-TTS: the default temperature is the
checkpoint's own); the duration noise is scaled by the same ratio to the checkpoint's value.
0 gives no noise at all (same audio for every seed).

Batching. One forward per batch for the text encoder, durations and flows; the batch key is
the speaker (VITS takes one speaker id per forward). Seeds and temperatures are per row. The
HiFi-GAN vocoder then decodes each row alone, at its own length: batched, the end of a shorter
row would see the batch's padding through its convolutions (bias-driven activations, not the
zeros it sees alone) and its last ~20 ms would change with the batch. So batched rows match
the same job run alone up to float rounding of the batched encoder and flows (1e-5 in our
tests; a duration that rounds up on one side of an integer could, rarely, add a frame).
"""

from __future__ import annotations

import math
import pathlib
import threading
from collections.abc import Hashable

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from transformers import VitsModel, VitsTokenizer

from speechmesh.inference.jobs import (
    InvalidOptionError,
    option_language,
    right_padded,
    run_jobs,
    run_one,
)
from speechmesh.inference.languages import primary_subtag
from speechmesh.inference.loading import load_pretrained, loaded
from speechmesh.tts.engines.base import (
    PresetVoice,
    SynthesisJob,
    VoicePrompt,
    check_job_limits,
    job_temperature,
)
from speechmesh.tts.engines.iso639 import ISO639_3_TO_1
from speechmesh.tts.engines.vits_text import VitsText, check_dependencies

FAMILY = "vits"
MAX_INPUT_CHARACTERS = 500
DEFAULT_VOICE = "default"
CANNOT_CLONE = "cannot clone voices; use preset voices or a CSM model"


def language_tag(code: str | None) -> str:
    """BCP-47 tag of a VITS tokenizer's language ("eng" -> "en"); "en" when unnamed."""
    if not code:
        return "en"
    if code.strip().lower() in ISO639_3_TO_1:
        return ISO639_3_TO_1[code.strip().lower()]
    try:
        from speechmesh.translate.languages import to_bcp47

        return to_bcp47(code)
    except ValueError:
        # An ISO 639-3 code is a BCP-47 tag where no two-letter code exists.
        return primary_subtag(code)


class _SeededNoise(TorchFunctionMode):
    """Replaces VITS's `torch.randn` / `torch.randn_like` draws of shape (batch, channels, time)
    with per-row noise: row i from a generator seeded with (seed_i, draw index), drawn as
    (time, channels) so a row's first t steps are the same whatever the padded length, times
    `scales[i]`."""

    def __init__(self, seeds: list[int], scales: list[float]):
        super().__init__()
        self.seeds = seeds
        self.scales = scales
        self.draws = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.randn_like:
            like = args[0]
            shape = like.shape
            dtype = kwargs.get("dtype") or like.dtype
            device = kwargs.get("device") or like.device
        elif func is torch.randn:
            shape = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
            shape = torch.Size(shape)
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            device = kwargs.get("device") or torch.get_default_device()
        else:
            return func(*args, **kwargs)
        if len(shape) != 3 or shape[0] != len(self.seeds):
            return func(*args, **kwargs)
        noise = torch.empty(shape, dtype=torch.float32)
        for row, (seed, scale) in enumerate(zip(self.seeds, self.scales, strict=True)):
            generator = torch.Generator().manual_seed(_mix(seed, self.draws))
            noise[row] = _normal((shape[2], shape[1]), generator).T * scale
        self.draws += 1
        return noise.to(device=device, dtype=dtype)


def _normal(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise whose first rows do not depend on `shape[0]`.

    `torch.randn` on CPU fills tensors of 16 or more values with a vectorised Box-Muller that
    pairs values 8 apart, so randn(n)[:k] changes with n; `torch.rand` draws in order.
    """
    uniform = torch.rand((*shape, 2), generator=generator, dtype=torch.float64)
    radius = torch.sqrt(-2.0 * torch.log1p(-uniform[..., 0]))  # 1 - u is in (0, 1]
    return (radius * torch.cos(2.0 * math.pi * uniform[..., 1])).float()


def _mix(seed: int, draw: int) -> int:
    """A 64-bit seed for draw `draw` of a job seeded `seed` (splitmix64 of the pair)."""
    z = (seed * 0x9E3779B97F4A7C15 + draw + 1) & 0xFFFF_FFFF_FFFF_FFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFF_FFFF_FFFF_FFFF
    return z ^ (z >> 31)


class VitsEngine:
    family = FAMILY
    supports_cloning = False
    max_input_characters = MAX_INPUT_CHARACTERS

    def __init__(self, name: str, path: pathlib.Path, device: torch.device, dtype: torch.dtype):
        self.name = name
        self._device = device
        self.tokenizer = VitsTokenizer.from_pretrained(path)
        check_dependencies(self.tokenizer, name)  # before the weights: refused fast
        self.model = load_pretrained(VitsModel, path, device, dtype)
        config = self.model.config
        self.sample_rate = int(config.sampling_rate)
        self.languages = [language_tag(getattr(self.tokenizer, "language", None))]
        self.text = VitsText(self.tokenizer, name, primary_subtag(self.languages[0]))
        self._speakers = int(config.num_speakers)
        if self._speakers > 1:
            self.preset_voices = [
                PresetVoice(f"speaker-{i}", f"Speaker {i}", tuple(self.languages))
                for i in range(self._speakers)
            ]
        else:
            self.preset_voices = [PresetVoice(DEFAULT_VOICE, "Default", tuple(self.languages))]
        self._voices = {voice.name: i for i, voice in enumerate(self.preset_voices)}
        self._noise_scale = float(config.noise_scale)
        self._lock = threading.Lock()
        self.default_temperature = self._noise_scale
        self.device, self.dtype, self.memory_bytes, self.random_weights = loaded(
            self.model, path, device, dtype
        )

    # -- interface -------------------------------------------------------------------------

    def batch_key(self, job: SynthesisJob) -> Hashable:
        """The speaker: VITS takes one speaker id per forward. Seeds and temperatures are per
        row (an unknown preset gets its own key and fails in run_batch)."""
        return (FAMILY, job.preset or self.preset_voices[0].name)

    def prepare_voice(self, audio: np.ndarray, transcript: str, language: str) -> VoicePrompt:
        raise InvalidOptionError("reference_audio", f"model {self.name} ({FAMILY}) {CANNOT_CLONE}")

    def warmup(self) -> None:
        run_one(self.run_batch, SynthesisJob(text="Hello.", language=self.languages[0]))

    @torch.inference_mode()
    def run_batch(self, jobs: list[SynthesisJob]) -> list[np.ndarray | BaseException]:
        speakers: list[int | None] = []  # the first runnable job's speaker is the batch's

        def prepare(job: SynthesisJob) -> list[int]:
            speaker = self._speaker(job)
            if speakers and speaker != speakers[0]:
                raise ValueError("jobs of one batch must share the speaker (batch_key)")
            ids = self._ids(job)
            speakers.append(speaker)
            return ids

        return run_jobs(jobs, prepare, lambda batch, ids: self._forward(batch, ids, speakers[0]))

    # -- internals -------------------------------------------------------------------------

    def _speaker(self, job: SynthesisJob) -> int | None:
        if job.prompt is not None:
            raise InvalidOptionError("voice", f"model {self.name} ({FAMILY}) {CANNOT_CLONE}")
        name = job.preset or self.preset_voices[0].name
        if name not in self._voices:
            raise InvalidOptionError(
                "preset_voice",
                f"model {self.name} has no preset voice {name!r}; it has {', '.join(self._voices)}",
            )
        return self._voices[name] if self._speakers > 1 else None

    def _ids(self, job: SynthesisJob) -> list[int]:
        asked = option_language(job.language, "language_code")
        if ISO639_3_TO_1.get(asked, asked) != primary_subtag(self.languages[0]):
            raise InvalidOptionError(
                "language_code",
                f"model {self.name} speaks {self.languages[0]}, not {job.language!r}",
            )
        check_job_limits(job, self.max_input_characters, self.default_temperature)
        ids = self.text.ids(job.text)
        blank = self.tokenizer.pad_token_id
        if not any(i != blank for i in ids):
            raise InvalidOptionError(
                "text", f"has nothing that model {self.name} can speak (its alphabet)"
            )
        return ids

    def _forward(
        self, jobs: list[SynthesisJob], ids: list[list[int]], speaker: int | None
    ) -> list[np.ndarray]:
        input_ids, mask = right_padded(ids, self.tokenizer.pad_token_id or 0)
        scales = [
            job_temperature(job, self.default_temperature) / self._noise_scale
            if self._noise_scale > 0
            else 0.0
            for job in jobs
        ]
        capture = _Spectrograms()
        with self._lock:  # the vocoder is swapped out for one forward at a time
            decoder = self.model.decoder
            # The forward with the vocoder taken out: each row's spectrogram is decoded alone,
            # at its own length, so that batch padding never reaches the vocoder's convolutions.
            self.model.decoder = capture
            try:
                with _SeededNoise([job.seed for job in jobs], scales):
                    output = self.model(
                        input_ids=input_ids.to(self._device),
                        attention_mask=mask.to(self._device),
                        speaker_id=speaker,
                    )
            finally:
                self.model.decoder = decoder
        hop = math.prod(self.model.config.upsample_rates)
        frames = (output.sequence_lengths.reshape(-1) // hop).tolist()
        waveforms = []
        for row, n in enumerate(frames):
            conditioning = capture.conditioning
            if conditioning is not None and conditioning.shape[0] > 1:
                conditioning = conditioning[row : row + 1]
            wave = decoder(capture.spectrogram[row : row + 1, :, : int(n)], conditioning)
            waveforms.append(
                np.ascontiguousarray(wave.reshape(-1).float().cpu().numpy(), dtype=np.float32)
            )
        return waveforms


class _Spectrograms(torch.nn.Module):
    """Stands in for VitsModel's vocoder during a forward: keeps what it would have decoded."""

    def __init__(self):
        super().__init__()
        self.spectrogram: torch.Tensor | None = None
        self.conditioning: torch.Tensor | None = None

    def forward(self, spectrogram: torch.Tensor, global_conditioning=None) -> torch.Tensor:
        self.spectrogram, self.conditioning = spectrogram, global_conditioning
        return spectrogram[:, :1]
