"""The domain of speech recognition: what engines take and give, and their interface.

An engine decodes windows of audio (at most `window_seconds` long, at
`sample_rate`) in batches. Everything else (long audio, streaming, protos)
lives above it, so a new model family only implements this.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# One error for the engines of every service; engines and servicers import it from here.
from speechmesh.inference.jobs import InvalidOptionError as InvalidOptionError


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; engines validate and normalise these before jobs are queued."""

    #: The engine's language code, or None to detect.
    language: str | None = None
    #: "transcribe" or "translate" (to English).
    task: str = "transcribe"
    word_timestamps: bool = False
    prompt: str = ""
    beam_size: int = 1
    temperature: float = 0.0
    #: Written form (punctuation, digits) when True; the spoken form when False. Only engines
    #: that can do both (`supports_text_normalization`) read it; Whisper always writes.
    text_normalization: bool = True

    def batch_key(self) -> Hashable:
        """Jobs with equal keys can share a forward pass (language may differ)."""
        return (
            self.task,
            self.word_timestamps,
            self.prompt,
            self.beam_size,
            self.temperature,
            self.text_normalization,
        )


@dataclass(frozen=True)
class DecodeJob:
    audio: np.ndarray  # float32 mono at the engine's sample rate, at most one window
    options: DecodeOptions


@dataclass
class Word:
    text: str
    start: float  # seconds from the start of the window (or of the audio, once placed)
    end: float
    probability: float


#: Emotions an engine may tag a segment with (`Segment.emotion`); "" when it tags none.
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
#: Non-speech audio events an engine may detect (`WindowResult.events`, `Segment.events`).
AUDIO_EVENTS = ("music", "applause", "laughter", "crying", "coughing", "sneezing", "breathing")


@dataclass
class Segment:
    text: str
    start: float
    end: float
    probability: float
    words: list[Word] = field(default_factory=list)
    #: The speaker's emotion (one of EMOTIONS), "" when the engine does not tell or is unsure.
    emotion: str = ""
    #: Audio events (AUDIO_EVENTS) heard in this segment's span, in the engine's order.
    events: list[str] = field(default_factory=list)

    def shifted(self, offset: float) -> Segment:
        return Segment(
            self.text,
            self.start + offset,
            self.end + offset,
            self.probability,
            [Word(w.text, w.start + offset, w.end + offset, w.probability) for w in self.words],
            self.emotion,
            list(self.events),
        )


#: Float slack when comparing a segment's start with the end of the audio, seconds.
END_TOLERANCE = 0.01


def past_the_end(start: float, duration: float) -> bool:
    """Whether a segment that starts at `start` (seconds, as decoded, before any clamping)
    starts at or past the end of `duration` seconds of audio. Whisper's window is padded to its
    full length; what it "hears" in the padding after the audio is made up, and OpenAI's
    transcribe() never seeks there (it stops at the end of the content). The engines drop such a
    segment when it follows others of the clip, i.e. when decoding went on past the speech."""
    return start >= duration - END_TOLERANCE


@dataclass
class WindowResult:
    segments: list[Segment]
    language: str
    language_probability: float
    #: Audio events (AUDIO_EVENTS) heard anywhere in the window, also when it has no text
    #: (laughter, music under a pause the VAD kept); its segments carry those they span.
    events: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)


class AsrEngine(Protocol):
    #: The name callers use (the id or path it was loaded from).
    name: str
    #: Engine family, e.g. "whisper".
    family: str
    #: Inference runtime, e.g. "ctranslate2" or "transformers".
    runtime: str
    #: Batches it decodes side by side (the batcher's worker threads).
    workers: int
    sample_rate: int
    window_seconds: float
    #: Engine language codes it knows.
    languages: list[str]
    supports_translation: bool
    supports_language_detection: bool
    supports_word_timestamps: bool
    #: Whether it tags segments with an emotion and detects audio events (SenseVoice).
    supports_emotion: bool
    supports_audio_events: bool
    #: Whether it can give the spoken form as well as the written one (DecodeOptions).
    supports_text_normalization: bool
    device: str
    dtype: str
    memory_bytes: int
    random_weights: bool

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
        """Validates request options (BCP-47 language) and maps them to the engine's.

        Raises InvalidOptionError naming the option.
        """
        ...

    def decode_batch(self, jobs: list[DecodeJob]) -> list[WindowResult | BaseException]:
        """Decodes windows in one forward pass; blocking, runs on the batcher's thread."""
        ...

    def warmup(self) -> None:
        """Runs one decode so the first request does not pay for lazy initialisation."""
        ...
