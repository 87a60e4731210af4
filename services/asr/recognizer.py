"""Recognition of whole recordings of any length, on top of an engine and its batcher.

Audio that fits one window is decoded as it is. Longer audio is cut where
nobody speaks (Silero VAD), the speech is packed into windows of at most the
engine's length, and all windows go to the batcher at once, so one long
file fills batches the way many short calls do (a long-running job's, at
background priority, a few at a time: speechmesh.inference.background).

`recognize_audio` takes a call's recording as it came: decoded, held to the service's length
limit and metered (speechmesh.runtime.recordings), then recognized.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from speechmesh.asr.engines.base import (
    AsrEngine,
    DecodeJob,
    DecodeOptions,
    Segment,
    WindowResult,
    Word,
)
from speechmesh.asr.engines.packing import Placement, TimedSegment, split
from speechmesh.dsp.audio import RawFormat
from speechmesh.dsp.vad import SileroVad, speech_windows
from speechmesh.inference import background
from speechmesh.inference.batcher import PRIORITY_HIGH, MicroBatcher, gather_all
from speechmesh.runtime.recordings import ProgressHook, WindowProgress, on_recording


@dataclass
class Transcript:
    segments: list[Segment]
    language: str
    language_probability: float
    duration: float
    #: Audio events heard, with the span each was heard in: (event, start, end) seconds. A
    #: segment's events span the segment; those of a window without text, the window.
    events: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)


class Recognizer:
    def __init__(
        self,
        engine: AsrEngine,
        batcher: MicroBatcher[DecodeJob, WindowResult],
        vad: SileroVad,
        *,
        max_audio_seconds: float = float("inf"),
    ):
        self.engine = engine
        self.batcher = batcher
        self.vad = vad
        #: Longest recording `recognize_audio` takes, in seconds.
        self.max_audio_seconds = max_audio_seconds

    async def decode(
        self, audio: np.ndarray, options: DecodeOptions, *, priority: int = PRIORITY_HIGH
    ) -> WindowResult:
        """Decodes one window (at most `engine.window_seconds`)."""
        return await background.submit(self.batcher, DecodeJob(audio, options), priority)

    async def decode_after(
        self,
        context: np.ndarray,
        audio: np.ndarray,
        options: DecodeOptions,
        context_speech_end: float | None = None,
    ) -> WindowResult:
        """Decodes `audio` heard right after `context`, in one window, at high priority.

        Whisper recognizes a sentence better when it hears what came before, as offline
        recognition of a long recording does. Only the words spoken after the context's speech
        are kept: those that start at or after `context_speech_end` (seconds into `context`;
        its end when None), in `audio`'s times. Words said before that point belong to the
        context even when the alignment stretches them over the pause; the first word after
        it is `audio`'s even when the alignment starts it a little early.
        """
        if not len(context) or not self.engine.supports_word_timestamps:
            return await self.decode(audio, options)
        rate = self.engine.sample_rate
        boundary = len(context) / rate
        owned_from = boundary if context_speech_end is None else min(context_speech_end, boundary)
        result = await self.decode(
            np.concatenate([context, audio]), replace(options, word_timestamps=True)
        )
        end = boundary + len(audio) / rate
        placements = [Placement(0, 0.0, owned_from), Placement(1, owned_from, end)]
        timed = [TimedSegment(s, s.words) for s in result.segments]
        pieces, again = split(timed, placements, None)
        if 1 in again:
            # Whisper gave the new audio no words while the context got some (it skips, or
            # runs into the context, a sentence that repeats what came before): decoded alone.
            return await self.decode(audio, options)
        segments = [_moved(s, owned_from - boundary, end - boundary) for s in pieces.get(1, [])]
        if not options.word_timestamps:
            segments = [replace(s, words=[]) for s in segments]
        return WindowResult(segments, result.language, result.language_probability, result.events)

    async def recognize_audio(
        self,
        data: bytes,
        raw: RawFormat | None,
        options: DecodeOptions,
        *,
        method: str,
        field: str = "audio",
        priority: int = PRIORITY_HIGH,
        on_progress: ProgressHook | None = None,
    ) -> Transcript:
        """The transcript of the recording a call sent (`data`; `raw` when not a container),
        limited to max_audio_seconds; errors name `field` (runtime.recordings.on_recording).
        Windows are decoded at `priority`; `on_progress` follows them (see `recognize`)."""
        return await on_recording(
            data,
            raw,
            self.engine.sample_rate,
            lambda samples: self.recognize(
                samples, options, priority=priority, on_progress=on_progress
            ),
            service="asr",
            method=method,
            max_seconds=self.max_audio_seconds,
            field=field,
            advice="split it, or stream it",
        )

    async def recognize(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        *,
        priority: int = PRIORITY_HIGH,
        on_progress: ProgressHook | None = None,
    ) -> Transcript:
        """Recognizes float32 mono samples at `engine.sample_rate`, of any length; its windows
        are decoded at `priority`. `on_progress` hears (0.0, length) first, then, as windows
        finish, the share of the speech decoded as seconds of the recording (the length once
        every window is done)."""
        rate = self.engine.sample_rate
        duration = len(audio) / rate
        progress = WindowProgress(duration, on_progress)
        windows = await speech_windows(self.vad, audio, duration, self.engine.window_seconds)
        progress.expect(windows)

        async def decode(start: float, end: float) -> WindowResult:
            result = await self.decode(
                audio[int(start * rate) : int(end * rate)], options, priority=priority
            )
            progress.done(end - start)
            return result

        results = await gather_all(decode(start, end) for start, end in windows)
        segments = [
            segment.shifted(start)
            for (start, _end), result in zip(windows, results, strict=True)
            for segment in result.segments
        ]
        language, probability = _language(windows, results, options)
        events = [(e, s.start, s.end) for s in segments for e in s.events]
        for (start, end), result in zip(windows, results, strict=True):
            if not result.segments:
                events += [(e, start, end) for e in result.events]
        return Transcript(segments, language, probability, duration, events)


def _moved(segment: Segment, offset: float, limit: float) -> Segment:
    """`segment` shifted by `offset` seconds, its times kept within [0, `limit`]."""

    def at(t: float) -> float:
        return min(max(t + offset, 0.0), limit)

    words = [Word(w.text, at(w.start), at(w.end), w.probability) for w in segment.words]
    return replace(segment, start=at(segment.start), end=at(segment.end), words=words)


def _language(
    windows: list[tuple[float, float]], results: list[WindowResult], options: DecodeOptions
) -> tuple[str, float]:
    """The requested language, or the one detected over most of the speech."""
    if options.language is not None:
        return options.language, 1.0
    if not results:
        return "", 0.0
    weight: Counter[str] = Counter()
    for (start, end), result in zip(windows, results, strict=True):
        weight[result.language] += (end - start) * result.language_probability
    language = weight.most_common(1)[0][0]
    probs = [r.language_probability for r in results if r.language == language]
    return language, float(np.mean(probs))
