"""SenseVoice (FunAudioLLM's SenseVoiceSmall): non-autoregressive multilingual recognition with
language, emotion and audio-event tags, in plain torch.

The reference runs through FunASR, whose front end calls torchaudio.compliance.kaldi.fbank.
torchaudio has no build for the CPU torch this project uses (its wheels pin their torch and
need CUDA libraries), so neither funasr nor torchaudio is imported anywhere: this engine is a
faithful port of the parts inference needs. sensevoice_frontend computes FunASR's WavFrontend
(Kaldi fbank, low frame rate, CMVN), sensevoice_model is the reference's network under its own
module names (the published model.pt loads with strict=True), sensevoice_tokens reads the CTC
output (tags, text, token times) and sensevoice_checkpoint the published folder layout.

One batch is one forward pass: each window's features are padded to the longest, the encoder
runs once with masks (a window decodes the same alone or in any batch), and each row is decoded
greedily. The four query frames carry each row's own language (or auto) and text normalization
(<|withitn|> for the written form, <|woitn|> for the spoken one), so rows of one batch may differ
in both. A window gives at most one segment, spanning its tokens, with the emotion and events the
model tagged; word times come from the frames each token holds on the CTC path (FunASR's
SenseVoice timestamps).
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from speechmesh.asr.engines.base import (
    DecodeJob,
    DecodeOptions,
    InvalidOptionError,
    Segment,
    WindowResult,
)
from speechmesh.asr.engines.sensevoice_checkpoint import SenseVoiceCheckpoint
from speechmesh.asr.engines.sensevoice_frontend import Frontend, load_cmvn
from speechmesh.asr.engines.sensevoice_model import LANGUAGE_QUERY, TEXTNORM_QUERY
from speechmesh.asr.engines.sensevoice_tokens import LANGUAGE_TAGS, Vocabulary, read_ctc
from speechmesh.asr.engines.words import group_words
from speechmesh.inference.jobs import option_language
from speechmesh.inference.loading import loaded

SAMPLE_RATE = 16000
#: SenseVoice has no hard limit (no positional table); windows stay bounded all the same.
WINDOW_SECONDS = 30.0
#: BCP-47 regions of Chinese that mean Cantonese here.
CANTONESE_REGIONS = {"hk", "mo"}


def language_code(tag: str) -> str:
    """SenseVoice's code for a BCP-47 tag: zh-CN, zh-Hans, cmn -> zh; yue, zh-HK, zh-MO,
    zh-yue -> yue; en-US -> en; anything else is its primary subtag (rejected later)."""
    code = option_language(tag, "language")
    subtags = [part.lower() for part in tag.strip().replace("_", "-").split("-")[1:]]
    if code == "zh" and (CANTONESE_REGIONS.intersection(subtags) or "yue" in subtags):
        return "yue"
    return code


class SenseVoiceEngine:
    family = "sensevoice"
    runtime = "torch"
    workers = 1  # torch spreads one batch over every core
    sample_rate = SAMPLE_RATE
    window_seconds = WINDOW_SECONDS
    supports_translation = False
    supports_language_detection = True
    supports_word_timestamps = True
    supports_emotion = True
    supports_audio_events = True
    supports_text_normalization = True

    def __init__(self, name: str, path: pathlib.Path, device: torch.device, dtype: torch.dtype):
        self.name = name
        self._device = device
        self._dtype = dtype
        checkpoint = SenseVoiceCheckpoint.read(path)
        if checkpoint.frontend.fs != SAMPLE_RATE:
            raise ValueError(f"{path}: frontend_conf.fs is {checkpoint.frontend.fs}, not 16000")
        self.vocab = Vocabulary(checkpoint.bpe_model)
        cmvn = load_cmvn(checkpoint.cmvn) if checkpoint.cmvn is not None else None
        self.frontend = Frontend(checkpoint.frontend, cmvn)
        self.model = checkpoint.build(self.vocab.size).to(device=device, dtype=dtype)
        self.languages = list(LANGUAGE_TAGS)
        self.device, self.dtype, self.memory_bytes, self.random_weights = loaded(
            self.model, path, device, dtype
        )

    def options(
        self,
        *,
        language: str,
        task: str,
        word_timestamps: bool,
        prompt: str,
        beam_size: int,
        temperature: float,
        text_normalization: bool = True,
    ) -> DecodeOptions:
        """Validates request options (BCP-47 language) and maps them to SenseVoice's."""
        code = language_code(language) if language else None
        if code is not None and code not in self.languages:
            raise InvalidOptionError(
                "language",
                f"{language!r} is not a language model {self.name} knows: SenseVoice knows"
                " zh, yue, en, ja, ko; leave it empty to detect",
            )
        if task != "transcribe":
            raise InvalidOptionError(
                "task", f"model {self.name} (SenseVoice) transcribes only; it cannot translate"
            )
        if prompt.strip():
            raise InvalidOptionError("prompt", "SenseVoice takes no prompt (nor hotwords)")
        if beam_size > 1:
            raise InvalidOptionError(
                "beam_size", f"is {beam_size}; SenseVoice decodes CTC greedily: use 1"
            )
        if temperature > 0:
            raise InvalidOptionError(
                "temperature", f"is {temperature}; SenseVoice decodes CTC greedily: use 0"
            )
        return DecodeOptions(
            language=code,
            task="transcribe",
            word_timestamps=word_timestamps,
            text_normalization=text_normalization,
        )

    def warmup(self) -> None:
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        result = self.decode_batch([DecodeJob(silence, DecodeOptions())])[0]
        if isinstance(result, BaseException):
            raise result

    @torch.inference_mode()
    def decode_batch(self, jobs: list[DecodeJob]) -> list[WindowResult | BaseException]:
        results: list[WindowResult | BaseException | None] = [None] * len(jobs)
        rows: list[int] = []
        features: list[torch.Tensor] = []
        for i, job in enumerate(jobs):
            try:
                features.append(self.frontend(job.audio))
                rows.append(i)
            except Exception as error:  # this window only
                results[i] = error
        if rows:
            hidden, lengths = self.encode(features, [jobs[i].options for i in rows])
            for k, i in enumerate(rows):
                try:
                    # One row at a time: a batch's (B, T, 25055) log-probabilities at once
                    # would take hundreds of megabytes.
                    log_probs = self.model.ctc.log_softmax(hidden[k, : int(lengths[k])])
                    results[i] = self._result(log_probs.cpu(), jobs[i])
                except Exception as error:
                    results[i] = error
        return results  # type: ignore[return-value]

    def encode(
        self, features: list[torch.Tensor], options: list[DecodeOptions]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output (B, 4 + T, D) for `features` padded to the longest, on the
        model's device, and each row's length (on the CPU)."""
        lengths = torch.tensor([len(f) for f in features])
        batch = torch.zeros((len(features), int(lengths.max()), self.frontend.output_size))
        for row, f in enumerate(features):
            batch[row, : len(f)] = f
        language = torch.tensor([LANGUAGE_QUERY[o.language or "auto"] for o in options])
        textnorm = torch.tensor(
            [TEXTNORM_QUERY["withitn" if o.text_normalization else "woitn"] for o in options]
        )
        device = self._device
        hidden, out_lengths = self.model.encode(
            batch.to(device=device, dtype=self._dtype),
            lengths.to(device),
            language.to(device),
            textnorm.to(device),
        )
        return hidden, out_lengths.cpu()

    def _result(self, log_probs: torch.Tensor, job: DecodeJob) -> WindowResult:
        decoded = read_ctc(log_probs, self.vocab)
        options = job.options
        language = options.language or decoded.best_language
        probability = 1.0 if options.language else decoded.language_probability
        text = self.vocab.text(decoded.tokens)
        if not text:
            return WindowResult([], language, probability, list(decoded.events))
        duration = len(job.audio) / SAMPLE_RATE
        starts, ends = decoded.token_times(self.frontend.frame_seconds)
        starts = np.clip(starts, 0.0, duration)
        ends = np.clip(ends, starts, duration)
        segment = Segment(
            text,
            float(starts[0]),
            float(ends[-1]),
            float(np.mean(decoded.probabilities)),
            emotion=decoded.emotion,
            events=list(decoded.events),
        )
        if options.word_timestamps:
            segment.words = group_words(
                self.vocab,
                decoded.tokens,
                starts,
                ends,
                decoded.probabilities,
                segment.start,
                segment.end,
            )
        return WindowResult([segment], language, probability, list(decoded.events))
