"""One live speech translation stream: segments cut by VAD, each translated as it ends.

What translates a segment is the path's (`DirectSegments`: this service's speech model;
`CascadeSegments`: the ASR -> text -> TTS cascade, whose speech follows the source's timeline:
silence fills the time between segments, so the stream's translated audio lines up with its
input).

`Endpointer` (speechmesh.dsp.endpointing) cuts the stream where the speaker pauses (or on a
forced endpoint, at the longest segment, at half-close). Each segment goes to the translator at
once, so segments of one stream and of other streams share forward passes; the results leave in
segment order: the source transcript (when asked), the translated text (when asked), the
translated speech (when asked), then the segment's end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import soxr

from speechmesh.dsp.audio import RawFormat
from speechmesh.dsp.endpointing import Endpointer, EndpointSettings, Utterance, VadBatcher
from speechmesh.dsp.vad import SAMPLE_RATE
from speechmesh.runtime import metrics
from speechmesh.translate.cascade.pipeline import SAMPLE_RATE as CASCADE_RATE
from speechmesh.translate.cascade.pipeline import Cascade
from speechmesh.translate.cascade.plan import CascadePlan
from speechmesh.translate.cascade.references import SourceSegment
from speechmesh.translate.translator import (
    SpeechOptions,
    SpeechTranslation,
    SpokenBy,
    Translator,
)


@dataclass(frozen=True)
class SegmentTranscript:
    index: int
    start: float
    end: float
    transcript: str
    #: Detected language (cascade path), BCP-47, and its probability; empty when not detected.
    language: str = ""
    probability: float = 0.0


@dataclass(frozen=True)
class SegmentText:
    index: int
    start: float
    end: float
    text: str
    language: str = ""
    truncated: bool = False


@dataclass(frozen=True)
class SegmentSpeech:
    index: int
    start: float
    end: float
    #: Translated speech, float32 mono at `sample_rate`.
    audio: np.ndarray
    sample_rate: int
    #: Where it starts in the stream's translated speech (the segments' speech back to back).
    offset: float


@dataclass(frozen=True)
class SegmentDone:
    index: int
    start: float
    end: float
    #: Length of the segment's translated speech; 0 without speech output.
    speech_seconds: float
    #: Who spoke it (cascade path with speech output).
    spoken_by: SpokenBy | None = None


class DirectSegments:
    """Segments translated by this service's speech model."""

    follows_source = False

    def __init__(self, translator: Translator, options: SpeechOptions):
        self.translator = translator
        self.rate = translator.engine.input_sample_rate
        self.want_transcript = options.transcript_code is not None
        self.want_text = options.want_text
        self.want_speech = options.want_speech
        self.options = options

    async def translate(self, audio: np.ndarray, offset: float) -> SpeechTranslation:
        return await self.translator.translate_speech(audio, self.options)


class CascadeSegments:
    """Segments translated by the cascade; short segments may clone their speaker's voice from
    the stream's earlier segments (the last 30 s are kept)."""

    follows_source = True
    rate = CASCADE_RATE

    def __init__(self, cascade: Cascade, plan: CascadePlan):
        self.cascade = cascade
        self.plan = plan
        self.want_transcript = plan.want_transcript
        self.want_text = plan.want_text
        self.want_speech = plan.want_speech
        self.history: list[SourceSegment] = []

    async def translate(self, audio: np.ndarray, offset: float) -> SpeechTranslation:
        return await self.cascade.translate(audio, self.plan, offset=offset, history=self.history)


class TranslationStream(Endpointer):
    def __init__(
        self,
        segments: DirectSegments | CascadeSegments,
        vad: VadBatcher,
        endpointing: EndpointSettings,
        raw: RawFormat | None,
    ):
        super().__init__(vad, endpointing, raw)
        self.translate = segments
        self._speech_at = 0.0  # seconds of translated speech sent so far
        #: Segments cut so far.
        self.segments = 0

    @property
    def speech_seconds(self) -> float:
        """Translated speech sent so far, seconds."""
        return self._speech_at

    def on_end(
        self, utterance: Utterance, audio: np.ndarray, end_sample: int, speech_ended: bool
    ) -> None:
        self.segments += 1
        rate = self.translate.rate
        if rate != SAMPLE_RATE:
            audio = soxr.resample(audio, SAMPLE_RATE, rate)
        ended_at = time.perf_counter()
        task = self.spawn(self.translate.translate(audio, utterance.start))
        self.emit(self._results(utterance.index, utterance.start, end_sample, task, ended_at))

    async def _results(
        self,
        index: int,
        start: float,
        end_sample: int,
        task: asyncio.Task[SpeechTranslation],
        ended_at: float,
    ) -> AsyncIterator[object]:
        result = await task
        metrics.ENDPOINT_TO_FINAL.labels("translate").observe(time.perf_counter() - ended_at)
        end = end_sample / SAMPLE_RATE
        language = result.detected_language
        if self.translate.want_transcript:
            yield SegmentTranscript(
                index, start, end, result.transcript, language, result.detected_probability
            )
        if self.translate.want_text:
            truncated = any(s.truncated for s in result.segments)
            yield SegmentText(index, start, end, result.text, language, truncated)
        seconds = 0.0
        spoken_by = next((s.spoken_by for s in result.segments if s.spoken_by), None)
        if self.translate.want_speech and result.audio is not None:
            audio = result.audio
            if self.translate.follows_source and start > self._speech_at:
                # Silence up to where the segment starts in the source: the stream's speech
                # keeps the source's timeline.
                pause = np.zeros(round((start - self._speech_at) * result.sample_rate), np.float32)
                audio = np.concatenate([pause, audio])
            seconds = len(audio) / result.sample_rate
            yield SegmentSpeech(index, start, end, audio, result.sample_rate, self._speech_at)
            self._speech_at += seconds
        yield SegmentDone(index, start, end, seconds, spoken_by)
