"""One synthesis stream: text pieces in, each sentence's audio out as soon as it is ready.

Pieces are buffered (`SentenceBuffer`) and cut at sentence ends, on a flush, or when text runs
past the longest sentence without an end. Every complete sentence goes to the synthesizer at
once, so it is being spoken while later text still arrives and shares forward passes with other
streams and calls; the audio leaves in sentence order. Half-close speaks what is buffered.
Cancelling the call cancels every sentence still queued or running.

`SpeechStream` is what a StreamingSynthesize call gets: the sentences' audio encoded as one
continuous recording and cut into chunks of at most CHUNK_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from speechmesh.dsp.endpointing import ForceEndpoint
from speechmesh.dsp.stream_encoder import StreamEncoder
from speechmesh.dsp.text_split import SentenceBuffer
from speechmesh.runtime import errors, metrics
from speechmesh.runtime.interceptor import call_stats
from speechmesh.runtime.streams import stream_inputs as _stream_inputs
from speechmesh.tts.resolver import option_fields
from speechmesh.tts.synthesizer import Style, Synthesizer, VoiceChoice
from speechmesh.tts.v1 import tts_pb2

#: A sentence with no end is cut after this many code points (the contract says 400).
MAX_SENTENCE_CHARACTERS = 400
#: Audio chunks of a stream carry at most this much speech each.
CHUNK_SECONDS = 0.5


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


@dataclass(frozen=True)
class AudioChunk:
    """A piece of a stream's encoded audio."""

    audio: bytes
    #: Sample rate of the encoded audio, Hz.
    sample_rate: int
    #: Where it starts in the stream's audio, seconds.
    offset: float
    #: Seconds of speech it carries; None for the encoder's tail (no samples of its own).
    duration: float | None
    sentence_index: int
    #: The sentence's text, on its first chunk only.
    text: str = ""
    #: Whether it is the sentence's last chunk.
    sentence_end: bool = False


class SpeechStream:
    """A synthesis stream with its audio encoded: text pieces in, AudioChunks out."""

    def __init__(
        self,
        model: str,
        synthesizer: Synthesizer,
        voice: VoiceChoice,
        style: Style,
        *,
        encoding: str,
        rate: int | None,
        max_piece: int,
        at: str = "",
    ):
        self.model = model
        self.seed = style.seed
        self.encoder = StreamEncoder(synthesizer.engine.sample_rate, encoding, rate)
        self._stream = SynthesisStream(synthesizer, voice, style, max_piece)
        self._at = at
        #: Sentences spoken so far.
        self.sentences = 0

    @property
    def characters(self) -> int:
        return self._stream.characters

    @property
    def seconds(self) -> float:
        """Seconds of audio sent so far."""
        return self._stream.seconds

    @property
    def sample_rate(self) -> int:
        """Sample rate of the encoded audio, Hz."""
        return self.encoder.rate

    async def chunks(self, inputs: AsyncIterator[object]) -> AsyncIterator[AudioChunk]:
        """Every sentence's audio as chunks, then the encoder's tail (if it holds any)."""
        with option_fields(self._at):
            async for sentence in self._stream.run(inputs):
                self.sentences = sentence.index + 1
                for chunk in self._sentence_chunks(sentence):
                    yield chunk
        call_stats().characters = self.characters
        tail = self.encoder.finish()
        if tail:
            yield AudioChunk(
                tail, self.encoder.rate, self.seconds, None, max(self.sentences - 1, 0)
            )

    def _sentence_chunks(self, sentence: SentenceAudio):
        """A sentence's audio as chunks of at most CHUNK_SECONDS; the last ends the sentence."""
        rate = sentence.sample_rate
        step = max(int(CHUNK_SECONDS * rate), 1)
        audio = sentence.audio if len(sentence.audio) else np.zeros(0, np.float32)
        starts = list(range(0, len(audio), step)) or [0]
        for k, at in enumerate(starts):
            piece = audio[at : at + step]
            yield AudioChunk(
                audio=self.encoder.encode(piece),
                sample_rate=self.encoder.rate,
                offset=sentence.offset + at / rate,
                duration=len(piece) / rate,
                sentence_index=sentence.index,
                text=sentence.text if k == 0 else "",
                sentence_end=k == len(starts) - 1,
            )
