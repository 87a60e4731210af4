"""One live recognition stream: VAD, endpointing, interim hypotheses, finals.

Audio arrives in chunks of any size. Silero VAD runs on 32 ms frames, with
the frames of all open streams batched together. An utterance begins at the
first speech frame and ends after `endpoint_silence` of non-speech (or on a
forced endpoint, at `max_utterance`, or at half-close). While it lasts,
interim hypotheses are decoded every `interim_interval` of new audio at low
priority, and the words two successive hypotheses agree on become the stable
prefix. At its end the utterance is decoded at high priority, with word
times, and the final result sent. Results leave in order: an event or result
queued after a final waits for that final.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import torch

from speechmesh.asr.engines.base import DecodeOptions, WindowResult, Word
from speechmesh.asr.recognizer import Recognizer
from speechmesh.common import metrics
from speechmesh.common.audio import RawFormat, StreamDecoder
from speechmesh.common.batcher import PRIORITY_LOW, MicroBatcher, QueueFullError
from speechmesh.common.vad import FRAME_SAMPLES, SAMPLE_RATE, SileroVad

PRE_ROLL = 0.3  # seconds of audio kept before the first speech frame
POST_ROLL = 0.2  # seconds of audio kept after the last speech frame


@dataclass(frozen=True)
class StreamSettings:
    options: DecodeOptions
    raw: RawFormat | None
    interim_results: bool = False
    single_utterance: bool = False
    voice_activity_events: bool = False
    endpoint_silence: float = 0.5
    vad_threshold: float = 0.5
    max_utterance: float = 30.0
    interim_interval: float = 0.5


@dataclass
class SpeechEvent:
    kind: str  # "begin", "end" or "end_of_single_utterance"
    offset: float


@dataclass
class UtteranceResult:
    index: int
    is_final: bool
    transcript: str
    stable_transcript: str
    stability: float
    start: float
    end: float
    language: str
    language_probability: float
    words: list[Word] = field(default_factory=list)


ForceEndpoint = object()  # sentinel an input stream yields to force an endpoint


class VadBatcher:
    """Steps Silero VAD for the frames of every open stream in shared forward passes."""

    def __init__(self, vad: SileroVad, max_batch_size: int = 64):
        self.vad = vad
        self.batcher: MicroBatcher[tuple[np.ndarray, torch.Tensor, torch.Tensor], tuple] = (
            MicroBatcher(
                "silero-vad",
                self._step,
                max_batch_size=max_batch_size,
                max_wait_s=0.0,
                max_queue=100_000,
            )
        )

    @torch.inference_mode()
    def _step(self, jobs):
        frames = torch.from_numpy(np.stack([j[0] for j in jobs]))
        context = torch.cat([j[1] for j in jobs])
        state = torch.cat([j[2] for j in jobs], dim=1)
        probs, context, state = self.vad(frames, context, state)
        return [
            (float(probs[i]), context[i : i + 1], state[:, i : i + 1]) for i in range(len(jobs))
        ]

    async def step(self, frame: np.ndarray, context: torch.Tensor, state: torch.Tensor):
        return await self.batcher.submit((frame, context, state))

    async def close(self) -> None:
        await self.batcher.close()


class _Utterance:
    def __init__(self, index: int, start_sample: int):
        self.index = index
        self.start_sample = start_sample
        self.last_speech_sample = start_sample
        self.began_at = time.perf_counter()
        self.sent_first = False
        self.finalized = False
        self.stable_words: list[str] = []
        self.previous_words: list[str] | None = None
        self.interim_task: asyncio.Task | None = None
        self.interim_at_sample = start_sample


class StreamingSession:
    def __init__(self, recognizer: Recognizer, vad: VadBatcher, settings: StreamSettings):
        self.recognizer = recognizer
        self.vad = vad
        self.settings = settings
        self._decoder = StreamDecoder(settings.raw, SAMPLE_RATE)
        self._context, self._state = vad.vad.initial_state()
        self._pending = np.zeros(0, dtype=np.float32)  # decoded, not yet VAD'd (< 1 frame)
        self._buffer = np.zeros(0, dtype=np.float32)  # audio kept for the current utterance
        self._buffer_start = 0  # stream sample index of _buffer[0]
        self._samples = 0  # samples VAD'd so far
        self._utterance: _Utterance | None = None
        self._count = 0
        self._out: asyncio.Queue = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._done = False
        self.audio_seconds = 0.0

    async def run(self, inputs: AsyncIterator[bytes | object]) -> AsyncIterator[object]:
        """Consumes audio chunks (and ForceEndpoint), yields SpeechEvent and UtteranceResult."""
        reader = asyncio.create_task(self._read(inputs))
        try:
            while True:
                item = await self._out.get()
                if item is None:
                    break
                if isinstance(item, asyncio.Future):
                    item = await item
                    if item is None:
                        continue
                yield item
            await reader  # surfaces a reader error, if any
        finally:
            reader.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(reader, *self._tasks, return_exceptions=True)

    async def _read(self, inputs: AsyncIterator[bytes | object]) -> None:
        try:
            async for item in inputs:
                if item is ForceEndpoint:
                    self._endpoint(self._samples)
                else:
                    await self._audio(self._decoder.feed(item))
                if self._done:
                    break
            else:
                await self._audio(self._decoder.flush(), final=True)
                if self._utterance is not None:
                    self._endpoint(self._samples)
        finally:
            self._out.put_nowait(None)

    async def _audio(self, samples: np.ndarray, final: bool = False) -> None:
        self.audio_seconds += len(samples) / SAMPLE_RATE
        samples = np.concatenate([self._pending, samples])
        whole = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
        if final and whole < len(samples):
            samples = np.pad(samples, (0, FRAME_SAMPLES - len(samples) % FRAME_SAMPLES))
            whole = len(samples)
        self._pending = samples[whole:]
        for offset in range(0, whole, FRAME_SAMPLES):
            if self._done:
                return
            await self._frame(samples[offset : offset + FRAME_SAMPLES])

    async def _frame(self, frame: np.ndarray) -> None:
        prob, self._context, self._state = await self.vad.step(frame, self._context, self._state)
        start = self._samples
        self._samples += len(frame)
        self._buffer = np.concatenate([self._buffer, frame])
        s = self.settings
        utterance = self._utterance
        if utterance is None:
            if prob >= s.vad_threshold:
                self._begin(start)
            else:
                self._trim(self._samples - int(PRE_ROLL * SAMPLE_RATE))
            return
        if prob >= max(s.vad_threshold - 0.15, 0.01):
            utterance.last_speech_sample = self._samples
        silence = (self._samples - utterance.last_speech_sample) / SAMPLE_RATE
        length = (self._samples - utterance.start_sample) / SAMPLE_RATE
        if silence >= s.endpoint_silence:
            self._endpoint(utterance.last_speech_sample, speech_ended=True)
        elif length >= s.max_utterance:
            if prob >= s.vad_threshold:  # still talking: the next utterance goes on from here
                self._endpoint(self._samples)
                self._begin(self._samples, event=False)
            else:  # the cut fell in trailing silence: speech ended where it last was heard
                self._endpoint(utterance.last_speech_sample, speech_ended=True)
        elif s.interim_results:
            self._maybe_interim(utterance)

    def _begin(self, sample: int, event: bool = True) -> None:
        self._utterance = _Utterance(self._count, sample)
        self._count += 1
        if event and self.settings.voice_activity_events:
            self._out.put_nowait(SpeechEvent("begin", sample / SAMPLE_RATE))

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = keep_from

    def _audio_between(self, start: int, end: int) -> np.ndarray:
        return self._buffer[max(0, start - self._buffer_start) : max(0, end - self._buffer_start)]

    def _maybe_interim(self, utterance: _Utterance) -> None:
        due = (
            self._samples - utterance.interim_at_sample
            >= self.settings.interim_interval * SAMPLE_RATE
        )
        if not due or utterance.interim_task is not None:
            return
        utterance.interim_at_sample = self._samples
        audio = self._audio_between(
            utterance.start_sample - int(PRE_ROLL * SAMPLE_RATE), self._samples
        )
        options = DecodeOptions(**{**self.settings.options.__dict__, "word_timestamps": False})
        task = self._spawn(self._interim(utterance, audio, options, self._samples))
        utterance.interim_task = task

    async def _interim(
        self, utterance: _Utterance, audio: np.ndarray, options: DecodeOptions, end_sample: int
    ) -> None:
        try:
            result = await self.recognizer.decode(audio, options, priority=PRIORITY_LOW)
        except QueueFullError:
            return  # interim hypotheses are best effort
        finally:
            utterance.interim_task = None
        if utterance.finalized or self._done:
            return
        words = result.text.split()
        if utterance.previous_words is not None:
            agreed = _common_prefix(utterance.previous_words, words)
            if agreed > len(utterance.stable_words):
                # Confirmed words are committed: later agreement only appends to them.
                utterance.stable_words += words[len(utterance.stable_words) : agreed]
        utterance.previous_words = words
        stable = utterance.stable_words
        shown = stable + words[len(stable) :]
        if not shown:
            return
        self._first_result(utterance)
        self._out.put_nowait(
            UtteranceResult(
                index=utterance.index,
                is_final=False,
                transcript=" ".join(shown),
                stable_transcript=" ".join(stable),
                stability=len(stable) / len(shown),
                start=utterance.start_sample / SAMPLE_RATE,
                end=end_sample / SAMPLE_RATE,
                language=result.language,
                language_probability=result.language_probability,
            )
        )

    def _endpoint(self, end_sample: int, speech_ended: bool = False) -> None:
        utterance = self._utterance
        if utterance is None:
            return
        self._utterance = None
        utterance.finalized = True
        if utterance.interim_task is not None:
            utterance.interim_task.cancel()
        s = self.settings
        if speech_ended and s.voice_activity_events:
            self._out.put_nowait(SpeechEvent("end", end_sample / SAMPLE_RATE))
        stop = min(end_sample + int(POST_ROLL * SAMPLE_RATE), self._samples)
        audio = self._audio_between(utterance.start_sample - int(PRE_ROLL * SAMPLE_RATE), stop)
        if s.single_utterance:
            self._out.put_nowait(SpeechEvent("end_of_single_utterance", end_sample / SAMPLE_RATE))
            self._done = True
        self._out.put_nowait(self._spawn(self._final(utterance, audio, end_sample)))
        self._trim(self._samples - int(PRE_ROLL * SAMPLE_RATE))

    async def _final(
        self, utterance: _Utterance, audio: np.ndarray, end_sample: int
    ) -> UtteranceResult | None:
        endpoint_at = time.perf_counter()
        result: WindowResult = await self.recognizer.decode(audio, self.settings.options)
        metrics.ENDPOINT_TO_FINAL.labels("asr").observe(time.perf_counter() - endpoint_at)
        if not result.text:
            return None
        self._first_result(utterance)
        offset = max(0, utterance.start_sample - int(PRE_ROLL * SAMPLE_RATE)) / SAMPLE_RATE
        words = [
            Word(w.text, w.start + offset, w.end + offset, w.probability)
            for segment in result.segments
            for w in segment.words
        ]
        return UtteranceResult(
            index=utterance.index,
            is_final=True,
            transcript=result.text,
            stable_transcript=result.text,
            stability=1.0,
            start=utterance.start_sample / SAMPLE_RATE,
            end=end_sample / SAMPLE_RATE,
            language=result.language,
            language_probability=result.language_probability,
            words=words,
        )

    def _first_result(self, utterance: _Utterance) -> None:
        if not utterance.sent_first:
            utterance.sent_first = True
            metrics.TIME_TO_FIRST_RESULT.labels("asr", "StreamingRecognize").observe(
                time.perf_counter() - utterance.began_at
            )

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _common_prefix(a: list[str], b: list[str]) -> int:
    """How many leading words two hypotheses share, ignoring case and punctuation."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if _word_key(x) != _word_key(y):
            break
        count += 1
    return count


def _word_key(word: str) -> str:
    return "".join(ch for ch in word.casefold() if ch.isalnum())
