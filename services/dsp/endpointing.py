"""Cutting a live audio stream into utterances with VAD, for every streaming service.

Audio arrives in chunks of any size (raw samples or a WAV stream). Silero VAD runs on 32 ms
frames, with the frames of all open streams of a process batched together (`VadBatcher`). An
utterance begins at the first speech frame and ends after `endpoint_silence` of non-speech, on a
forced endpoint, at `max_utterance` (speech goes on in a new utterance) or at half-close.

`Endpointer` does the cutting and keeps the results in order; a service subclasses it and says
what happens when an utterance begins, grows by a frame, and ends (`on_begin`, `on_frame`,
`on_end`). Results leave `run` in the order they were emitted: a plain item, the result of a
task (None is skipped) or every item of an async iterator, each waiting for those before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import numpy as np
import torch

from speechmesh.dsp.audio import RawFormat, StreamDecoder
from speechmesh.dsp.vad import FRAME_SAMPLES, SAMPLE_RATE, SileroVad
from speechmesh.inference.batcher import MicroBatcher

PRE_ROLL = 0.3  # seconds of audio kept before the first speech frame
POST_ROLL = 0.2  # seconds of audio kept after the last speech frame

ForceEndpoint = object()  # sentinel an input stream yields to force an endpoint


@dataclass(frozen=True)
class EndpointSettings:
    #: Non-speech that ends an utterance, seconds.
    endpoint_silence: float = 0.5
    #: Speech probability above which a frame is speech.
    vad_threshold: float = 0.5
    #: Longest utterance, seconds; longer speech goes on in the next one.
    max_utterance: float = 30.0


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
                # A step per 32 ms frame of every stream: a span each would drown the traces.
                traced=False,
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


class Utterance:
    """One stretch of speech in a stream; subclasses of Endpointer may extend it."""

    def __init__(self, index: int, start_sample: int):
        self.index = index
        self.start_sample = start_sample
        self.last_speech_sample = start_sample
        self.began_at = time.perf_counter()
        self.finalized = False

    @property
    def start(self) -> float:
        return self.start_sample / SAMPLE_RATE


class Endpointer:
    """Cuts one live stream into utterances; subclasses act on them (see module doc)."""

    utterance_class: type[Utterance] = Utterance
    #: Audio kept from before the open utterance (for subclasses that decode it as context).
    history_seconds: float = 0.0

    def __init__(self, vad: VadBatcher, settings: EndpointSettings, raw: RawFormat | None):
        self.vad = vad
        self.endpointing = settings
        self._decoder = StreamDecoder(raw, SAMPLE_RATE)
        self._context, self._state = vad.vad.initial_state()
        self._pending = np.zeros(0, dtype=np.float32)  # decoded, not yet VAD'd (< 1 frame)
        self._buffer = np.zeros(0, dtype=np.float32)  # audio kept for the current utterance
        self._buffer_start = 0  # stream sample index of _buffer[0]
        self.samples = 0  # samples VAD'd so far (the last frame padded)
        self._received = 0  # samples received
        self.utterance: Utterance | None = None
        self._count = 0
        self._out: asyncio.Queue = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self.done = False
        self.audio_seconds = 0.0

    # -- what subclasses do ------------------------------------------------

    def on_begin(self, utterance: Utterance, continued: bool) -> None:
        """An utterance began; `continued` when it goes on from one cut at max_utterance."""

    def on_frame(self, utterance: Utterance) -> None:
        """The open utterance grew by a frame (and did not end)."""

    def on_end(
        self, utterance: Utterance, audio: np.ndarray, end_sample: int, speech_ended: bool
    ) -> None:
        """The utterance ended at `end_sample`; `audio` is it with pre- and post-roll.
        `speech_ended` when the speaker paused (not a forced cut)."""

    def on_pause(self, utterance: Utterance, silence: float) -> bool:
        """The speaker has been silent for `silence` s (at least endpoint_silence): end the
        utterance now? A subclass that says no may end it later with `end_paused`."""
        return True

    # -- helpers for subclasses ---------------------------------------------

    def emit(self, item: object) -> None:
        """Sends an item, an awaitable of one (None: nothing) or an async iterator of items,
        after everything emitted before it."""
        self._out.put_nowait(item)

    def spawn(self, coro: Awaitable) -> asyncio.Task:
        """Runs `coro` now, cancelled if the stream ends first."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def audio_between(self, start: int, end: int) -> np.ndarray:
        return self._buffer[max(0, start - self._buffer_start) : max(0, end - self._buffer_start)]

    def endpoint(self) -> None:
        """Ends the open utterance now (a forced endpoint); nothing when none is open."""
        self._endpoint(self.samples)

    def end_paused(self, utterance: Utterance) -> None:
        """Ends `utterance` where its speech stopped, if it is still the open one."""
        if self.utterance is utterance:
            self._endpoint(utterance.last_speech_sample, speech_ended=True)

    # -- the stream ----------------------------------------------------------

    async def run(self, inputs: AsyncIterator[bytes | object]) -> AsyncIterator[object]:
        """Consumes audio chunks (and ForceEndpoint), yields what the subclass emits."""
        reader = asyncio.create_task(self._read(inputs))
        try:
            while True:
                item = await self._out.get()
                if item is None:
                    break
                if isinstance(item, Awaitable):
                    item = await item
                    if item is None:
                        continue
                if isinstance(item, AsyncIterator):
                    async for each in item:
                        yield each
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
                    self.endpoint()
                else:
                    await self._audio(self._decoder.feed(item))
                if self.done:
                    break
            else:
                await self._audio(self._decoder.flush(), final=True)
                self._finish()
        finally:
            self._out.put_nowait(None)

    def _finish(self) -> None:
        """The input ended: the open utterance ends where its speech did if the speaker had
        paused, else at the last sample received (not the padding of the last frame)."""
        utterance = self.utterance
        if utterance is None:
            return
        silence = (self.samples - utterance.last_speech_sample) / SAMPLE_RATE
        if silence >= self.endpointing.endpoint_silence:
            self.end_paused(utterance)
        else:
            self._endpoint(min(self.samples, self._received))

    async def _audio(self, samples: np.ndarray, final: bool = False) -> None:
        self.audio_seconds += len(samples) / SAMPLE_RATE
        self._received += len(samples)
        samples = np.concatenate([self._pending, samples])
        whole = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
        if final and whole < len(samples):
            samples = np.pad(samples, (0, FRAME_SAMPLES - len(samples) % FRAME_SAMPLES))
            whole = len(samples)
        self._pending = samples[whole:]
        for offset in range(0, whole, FRAME_SAMPLES):
            if self.done:
                return
            await self._frame(samples[offset : offset + FRAME_SAMPLES])

    async def _frame(self, frame: np.ndarray) -> None:
        prob, self._context, self._state = await self.vad.step(frame, self._context, self._state)
        start = self.samples
        self.samples += len(frame)
        self._buffer = np.concatenate([self._buffer, frame])
        s = self.endpointing
        utterance = self.utterance
        if utterance is None:
            if prob >= s.vad_threshold:
                self._begin(start)
            else:
                self._trim(self.samples - int(PRE_ROLL * SAMPLE_RATE))
            return
        if prob >= max(s.vad_threshold - 0.15, 0.01):
            utterance.last_speech_sample = self.samples
        silence = (self.samples - utterance.last_speech_sample) / SAMPLE_RATE
        length = (self.samples - utterance.start_sample) / SAMPLE_RATE
        if silence >= s.endpoint_silence and self.on_pause(utterance, silence):
            self._endpoint(utterance.last_speech_sample, speech_ended=True)
        elif length >= s.max_utterance:
            if prob >= s.vad_threshold:  # still talking: the next utterance goes on from here
                self._endpoint(self.samples)
                self._begin(self.samples, continued=True)
            else:  # the cut fell in trailing silence: speech ended where it last was heard
                self._endpoint(utterance.last_speech_sample, speech_ended=True)
        else:
            self.on_frame(utterance)

    def _begin(self, sample: int, continued: bool = False) -> None:
        self.utterance = self.utterance_class(self._count, sample)
        self._count += 1
        self.on_begin(self.utterance, continued)

    @property
    def buffered_from(self) -> int:
        """The stream sample index of the oldest audio still held."""
        return self._buffer_start

    def _trim(self, keep_from: int) -> None:
        keep_from -= int(self.history_seconds * SAMPLE_RATE)
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = keep_from

    def _endpoint(self, end_sample: int, speech_ended: bool = False) -> None:
        utterance = self.utterance
        if utterance is None:
            return
        self.utterance = None
        utterance.finalized = True
        stop = min(end_sample + int(POST_ROLL * SAMPLE_RATE), self.samples)
        audio = self.audio_between(utterance.start_sample - int(PRE_ROLL * SAMPLE_RATE), stop)
        self.on_end(utterance, audio, end_sample, speech_ended)
        self._trim(self.samples - int(PRE_ROLL * SAMPLE_RATE))
