"""One live speech translation stream: segments cut by VAD, each translated as it ends.

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
from speechmesh.translate.translator import SpeechOptions, SpeechTranslation, Translator


@dataclass(frozen=True)
class SegmentTranscript:
    index: int
    start: float
    end: float
    transcript: str


@dataclass(frozen=True)
class SegmentText:
    index: int
    start: float
    end: float
    text: str


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


class TranslationStream(Endpointer):
    def __init__(
        self,
        translator: Translator,
        vad: VadBatcher,
        endpointing: EndpointSettings,
        raw: RawFormat | None,
        options: SpeechOptions,
    ):
        super().__init__(vad, endpointing, raw)
        self.translator = translator
        self.options = options
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
        rate = self.translator.engine.input_sample_rate
        if rate != SAMPLE_RATE:
            audio = soxr.resample(audio, SAMPLE_RATE, rate)
        ended_at = time.perf_counter()
        task = self.spawn(self.translator.translate_speech(audio, self.options))
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
        if self.options.transcript_code is not None:
            yield SegmentTranscript(index, start, end, result.transcript)
        if self.options.want_text:
            yield SegmentText(index, start, end, result.text)
        seconds = 0.0
        if self.options.want_speech and result.audio is not None:
            seconds = len(result.audio) / result.sample_rate
            yield SegmentSpeech(
                index, start, end, result.audio, result.sample_rate, self._speech_at
            )
            self._speech_at += seconds
        yield SegmentDone(index, start, end, seconds)
