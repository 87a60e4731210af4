"""One synthesis stream: text pieces in, each sentence's audio out as soon as it is ready.

Pieces are buffered (`SentenceBuffer`) and cut at sentence ends, on a flush, or when text runs
past the longest sentence without an end. Every complete sentence goes to the synthesizer at
once, so it is being spoken while later text still arrives and shares forward passes with other
streams and calls; the audio leaves in sentence order. Half-close speaks what is buffered.
Cancelling the call cancels every sentence still queued or running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from speechmesh.dsp.endpointing import ForceEndpoint
from speechmesh.dsp.text_split import SentenceBuffer
from speechmesh.runtime import errors, metrics
from speechmesh.runtime.streams import stream_inputs as _stream_inputs
from speechmesh.tts.synthesizer import Style, Synthesizer, VoiceChoice
from speechmesh.tts.v1 import tts_pb2

#: A sentence with no end is cut after this many code points (the contract says 400).
MAX_SENTENCE_CHARACTERS = 400


@dataclass(frozen=True)
class SentenceAudio:
    index: int
    text: str
    #: The sentence's speech (after the pause that separates it from the one before), float32
    #: mono at `sample_rate`.
    audio: np.ndarray
    sample_rate: int
    #: Where it starts in the stream's audio, seconds.
    offset: float


def stream_inputs(request_iterator) -> AsyncIterator[object]:
    """Text pieces, and ForceEndpoint for a flush."""
    return _stream_inputs(request_iterator, "text", tts_pb2.StreamingControl.ACTION_FLUSH)


class SynthesisStream:
    def __init__(self, synthesizer: Synthesizer, voice: VoiceChoice, style: Style, max_piece: int):
        self.synthesizer = synthesizer
        self.voice = voice
        self.style = style
        self.max_piece = max_piece
        limit = min(MAX_SENTENCE_CHARACTERS, synthesizer.engine.max_input_characters)
        self._buffer = SentenceBuffer(limit)
        self._queue: asyncio.Queue = asyncio.Queue()
        self._count = 0
        self.characters = 0
        #: Seconds of audio sent so far.
        self.seconds = 0.0

    async def run(self, inputs: AsyncIterator[object]) -> AsyncIterator[SentenceAudio]:
        reader = asyncio.create_task(self._read(inputs))
        tasks: list[asyncio.Task] = []
        try:
            rate = self.synthesizer.engine.sample_rate
            pause = np.zeros(int(self.synthesizer.pause_s * rate), np.float32)
            while (item := await self._queue.get()) is not None:
                index, text, task, ready_at = item
                tasks.append(task)
                audio = await task
                if index == 0:
                    metrics.TIME_TO_FIRST_RESULT.labels("tts", "StreamingSynthesize").observe(
                        time.perf_counter() - ready_at
                    )
                if index:
                    audio = np.concatenate([pause, audio])
                yield SentenceAudio(index, text, audio, rate, self.seconds)
                self.seconds += len(audio) / rate
            await reader  # surfaces a reader error, if any
        finally:
            reader.cancel()
            pending = [reader, *tasks]
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    pending.append(item[2])
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _read(self, inputs: AsyncIterator[object]) -> None:
        try:
            async for item in inputs:
                if item is ForceEndpoint:
                    self._speak(self._buffer.flush())
                    continue
                if not item:
                    raise errors.invalid_argument("text", "is empty; send 1 or more characters")
                if len(item) > self.max_piece:
                    raise errors.invalid_argument(
                        "text", f"is {len(item)} characters; at most {self.max_piece} per piece"
                    )
                self.characters += len(item)
                self._speak(self._buffer.add(item))
            self._speak(self._buffer.flush())
        finally:
            self._queue.put_nowait(None)

    def _speak(self, sentences: list[str]) -> None:
        for text in sentences:
            task = asyncio.ensure_future(
                self.synthesizer.speak_sentence(text, self._count, self.voice, self.style)
            )
            self._queue.put_nowait((self._count, text, task, time.perf_counter()))
            self._count += 1
