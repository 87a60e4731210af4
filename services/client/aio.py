"""The asyncio client: `AsyncClient(...)` with `.asr`, `.translate` and `.tts`.

The same methods as the blocking Client, as coroutines; streaming methods return async
iterators and take sync or async iterables (a sync iterable is read in a worker thread, so a
blocking source such as a microphone does not stall the event loop).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.client import _requests as req
from speechmesh.client._common import (
    DEFAULT,
    PIECE_SECONDS,
    RequestGuard,
    merge_transcripts,
    split_text,
)
from speechmesh.client._connection import SERVICE_HEADER, SERVICES, Connection
from speechmesh.client.audio import (
    CHUNK_SECONDS,
    STREAM_RATE,
    apaced,
    chunks,
    decode,
    quiet_cuts,
    read_bytes,
    to_linear16,
)
from speechmesh.client.errors import SpeechmeshError, Unavailable, from_rpc_error
from speechmesh.client.types import (
    AudioChunk,
    Health,
    ModelInfo,
    ModelLanguages,
    Speech,
    SpeechEvent,
    SpeechTranslation,
    SpeechTranslationEvent,
    StreamingResult,
    SynthesisSummary,
    Transcript,
    Translation,
    Voice,
    seconds,
)
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.translate.v1 import translate_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

__all__ = [
    "AsyncAsrClient",
    "AsyncClient",
    "AsyncSynthesisStream",
    "AsyncTranslateClient",
    "AsyncTtsClient",
]

Chunks = Iterable[Any] | AsyncIterable[Any]


class AsyncClient:
    """An asyncio client of speechmesh; the arguments are those of `Client`.

    Use it as `async with AsyncClient(...) as client:`, or call `await client.close()`.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        tls: bool | None = None,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float | None = 300.0,
        stream_timeout: float | None = None,
        retries: int = 2,
        ca_cert: str | os.PathLike | bytes | None = None,
        tls_server_name: str | None = None,
        keepalive: float = 30.0,
        metadata: dict[str, str] | None = None,
        options: list[tuple[str, Any]] | None = None,
    ):
        self.connection = Connection.build(
            target,
            tls=tls,
            api_key=api_key,
            token=token,
            retries=retries,
            ca_cert=ca_cert,
            tls_server_name=tls_server_name,
            keepalive_s=keepalive,
            metadata=metadata,
            options=options,
        )
        self.target = self.connection.target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.channel = self.connection.aio_channel()
        self.asr = AsyncAsrClient(self)
        self.translate = AsyncTranslateClient(self)
        self.tts = AsyncTtsClient(self)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    def _metadata(self, extra=()) -> tuple:
        return (*self.connection.metadata, *extra)

    async def _unary(self, method, request, timeout=DEFAULT, extra_metadata=()):
        try:
            return await method(
                request,
                timeout=self.timeout if timeout is DEFAULT else timeout,
                metadata=self._metadata(extra_metadata),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def _stream(self, method, guard: RequestGuard, items: Chunks, timeout=DEFAULT):
        call = method(
            guard.aio(items),
            timeout=self.stream_timeout if timeout is DEFAULT else timeout,
            metadata=self._metadata(),
        )
        guard.call = call
        try:
            async for response in call:
                yield response
        except grpc.RpcError as error:
            if guard.error is not None:
                raise guard.error from None
            raise from_rpc_error(error) from error
        except asyncio.CancelledError:
            if guard.error is not None:  # the request iterator failed and cancelled the call
                raise guard.error from None
            raise
        finally:
            call.cancel()
        if guard.error is not None:
            raise guard.error

    async def health(self, services: Iterable[str] = tuple(SERVICES), timeout: float = 5.0):
        """{service: Health}; see Client.health."""
        found: dict[str, Health] = {}
        for name in services:
            request = health_pb2.HealthCheckRequest(service=SERVICES[name].full_name)
            try:
                reply = await self._unary(
                    self._health.Check, request, timeout, ((SERVICE_HEADER, name),)
                )
            except Unavailable as error:
                if error.connect_failed:
                    raise
                found[name] = Health(name, "UNAVAILABLE", error.message)
            except SpeechmeshError as error:
                status = "SERVICE_UNKNOWN" if error.code.name == "NOT_FOUND" else error.code.name
                found[name] = Health(name, status, error.message)
            else:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                found[name] = Health(name, status)
        return found

    async def models(self) -> list[ModelInfo]:
        return [
            *await self.asr.models(),
            *await self.translate.models(),
            *await self.tts.models(),
        ]


async def _file_chunks(audio, realtime: bool, chunk_seconds: float) -> AsyncIterator[bytes]:
    name = str(audio) if isinstance(audio, (str, os.PathLike)) else "audio"
    samples = await asyncio.to_thread(lambda: decode(read_bytes(audio), name))
    pieces = chunks(to_linear16(samples), STREAM_RATE, chunk_seconds)
    if realtime:
        async for piece in apaced(pieces, chunk_seconds):
            yield piece
    else:
        for piece in pieces:
            yield piece


class AsyncAsrClient:
    """Speech recognition: `client.asr`."""

    def __init__(self, client: AsyncClient):
        self._client = client
        self.stub = asr_pb2_grpc.AsrServiceStub(client.channel)

    async def recognize(
        self,
        audio,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> Transcript:
        """See Client.asr.recognize."""
        request = asr_pb2.RecognizeRequest(
            request_id=request_id,
            config=req.recognition_config(**options),
            audio=await asyncio.to_thread(read_bytes, audio),
        )
        reply = await self._client._unary(self.stub.Recognize, request, timeout)
        return Transcript.from_proto(reply)

    async def recognize_file(
        self,
        audio,
        *,
        progress: Callable[[float, float], None] | None = None,
        piece_seconds: float = PIECE_SECONDS,
        concurrency: int = 2,
        **options,
    ) -> Transcript:
        """See Client.asr.recognize_file."""
        data = await asyncio.to_thread(read_bytes, audio)
        name = str(audio) if isinstance(audio, (str, os.PathLike)) else "audio"
        samples = await asyncio.to_thread(decode, data, name)
        total = len(samples) / STREAM_RATE
        cuts = quiet_cuts(samples, STREAM_RATE, piece_seconds)
        if progress:
            progress(0.0, total)
        if len(cuts) == 1:
            result = await self.recognize(data, **options)
            if progress:
                progress(total, total)
            return result
        limit = asyncio.Semaphore(max(1, concurrency))
        done = 0.0

        async def one(cut: tuple[float, float]) -> Transcript:
            nonlocal done
            start, end = (int(t * STREAM_RATE) for t in cut)
            async with limit:
                result = await self.recognize(
                    to_linear16(samples[start:end]),
                    encoding="linear16",
                    sample_rate=STREAM_RATE,
                    **options,
                )
            done += cut[1] - cut[0]
            if progress:
                progress(min(done, total), total)
            return result

        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the other pieces
                tasks = [group.create_task(one(cut)) for cut in cuts]
        except* SpeechmeshError as failed:
            raise failed.exceptions[0] from None
        return merge_transcripts(cuts, [task.result() for task in tasks], total)

    async def stream(
        self,
        chunks: Chunks,
        *,
        encoding: str | None = "linear16",
        sample_rate: int | None = STREAM_RATE,
        channels: int = 1,
        interim_results: bool = True,
        timeout: float | None = DEFAULT,
        **options,
    ) -> AsyncIterator[StreamingResult | SpeechEvent]:
        """See Client.asr.stream; `chunks` may be a sync or async iterable."""
        first = req.streaming_recognition_config(
            encoding=encoding,
            sample_rate=sample_rate if encoding else None,
            channels=channels,
            interim_results=interim_results,
            **options,
        )
        guard = RequestGuard(first, lambda chunk: req.asr_audio_message(chunk, encoding))
        async for response in self._client._stream(
            self.stub.StreamingRecognize, guard, chunks, timeout
        ):
            if response.HasField("speech_event"):
                yield SpeechEvent.from_proto(response)
            else:
                yield StreamingResult.from_proto(response)

    def stream_file(
        self, audio, *, realtime: bool = False, chunk_seconds: float = CHUNK_SECONDS, **options
    ) -> AsyncIterator[StreamingResult | SpeechEvent]:
        """See Client.asr.stream_file."""
        pieces = _file_chunks(audio, realtime, chunk_seconds)
        return self.stream(pieces, encoding="linear16", sample_rate=STREAM_RATE, **options)

    async def models(self, timeout: float | None = DEFAULT) -> list[ModelInfo]:
        reply = await self._client._unary(
            self.stub.ListModels, asr_pb2.ListModelsRequest(), timeout
        )
        return [ModelInfo.from_proto("asr", m) for m in reply.models]


class AsyncTranslateClient:
    """Translation of text and speech: `client.translate`."""

    def __init__(self, client: AsyncClient):
        self._client = client
        self.stub = translate_pb2_grpc.TranslateServiceStub(client.channel)

    async def text(
        self,
        texts: str | list[str],
        *,
        to: str,
        source: str | None = None,
        model: str | None = None,
        request_id: str = "",
        timeout: float | None = DEFAULT,
    ) -> Translation | list[Translation]:
        """See Client.translate.text."""
        many = not isinstance(texts, str)
        request = tr.TranslateTextRequest(
            request_id=request_id,
            texts=list(texts) if many else [texts],
            source_language_code=source or "",
            target_language_code=to,
            model=model or "",
        )
        reply = await self._client._unary(self.stub.TranslateText, request, timeout)
        found = [
            Translation(
                t.translated_text,
                t.source_language_code,
                t.source_language_probability,
                reply.model,
                t,
            )
            for t in reply.translations
        ]
        return found if many else found[0]

    async def speech(
        self, audio, *, to: str, request_id: str = "", timeout=DEFAULT, **options
    ) -> SpeechTranslation:
        """See Client.translate.speech."""
        request = tr.TranslateSpeechRequest(
            request_id=request_id,
            config=req.speech_translation_config(to=to, **options),
            audio=await asyncio.to_thread(read_bytes, audio),
        )
        reply = await self._client._unary(self.stub.TranslateSpeech, request, timeout)
        return SpeechTranslation.from_proto(reply, req.normalized_format(options.get("format")))

    async def text_to_speech(
        self,
        text: str,
        *,
        to: str,
        source: str | None = None,
        voice: str | None = None,
        format: str | None = None,
        sample_rate: int | None = None,
        model: str | None = None,
        request_id: str = "",
        timeout: float | None = DEFAULT,
    ) -> Speech:
        """See Client.translate.text_to_speech."""
        request = tr.TranslateTextToSpeechRequest(
            request_id=request_id,
            text=text,
            config=tr.TextToSpeechTranslationConfig(
                model=model or "",
                source_language_code=source or "",
                target_language_code=to,
                output_audio_config=req.output_config(format, sample_rate),
                voice=voice or "",
            ),
        )
        r = await self._client._unary(self.stub.TranslateTextToSpeech, request, timeout)
        return Speech(
            r.audio,
            r.sample_rate_hertz,
            seconds(r.audio_duration),
            req.normalized_format(format),
            r.model,
            voice=r.voice,
            text=r.translated_text,
            proto=r,
        )

    async def stream_speech(
        self,
        chunks: Chunks,
        *,
        to: str,
        encoding: str | None = "linear16",
        sample_rate: int | None = STREAM_RATE,
        timeout: float | None = DEFAULT,
        **options,
    ) -> AsyncIterator[SpeechTranslationEvent]:
        """See Client.translate.stream_speech."""
        first = req.streaming_translation_config(
            to=to, encoding=encoding, sample_rate=sample_rate if encoding else None, **options
        )
        guard = RequestGuard(first, lambda chunk: req.translate_audio_message(chunk, encoding))
        async for response in self._client._stream(
            self.stub.StreamingTranslateSpeech, guard, chunks, timeout
        ):
            yield SpeechTranslationEvent.from_proto(response)

    def stream_speech_file(
        self,
        audio,
        *,
        to: str,
        realtime: bool = False,
        chunk_seconds: float = CHUNK_SECONDS,
        **options,
    ) -> AsyncIterator[SpeechTranslationEvent]:
        pieces = _file_chunks(audio, realtime, chunk_seconds)
        return self.stream_speech(pieces, to=to, **options)

    async def languages(self, model: str | None = None, timeout=DEFAULT) -> list[ModelLanguages]:
        request = tr.ListLanguagesRequest(model=model or "")
        reply = await self._client._unary(self.stub.ListLanguages, request, timeout)
        return [ModelLanguages.from_proto(m) for m in reply.models]

    async def models(self, timeout: float | None = DEFAULT) -> list[ModelInfo]:
        reply = await self._client._unary(self.stub.ListModels, tr.ListModelsRequest(), timeout)
        return [ModelInfo.from_proto("translate", m) for m in reply.models]


class AsyncSynthesisStream:
    """The audio of a synthesis stream: `async for chunk in stream`; `summary` is set once
    the stream has ended."""

    def __init__(self, responses: AsyncIterator):
        self._responses = responses
        self.summary: SynthesisSummary | None = None

    async def __aiter__(self) -> AsyncIterator[AudioChunk]:
        async for response in self._responses:
            if response.HasField("audio_chunk"):
                yield AudioChunk.from_proto(response)
            elif response.HasField("summary"):
                self.summary = SynthesisSummary.from_proto(response)

    async def cancel(self) -> None:
        await self._responses.aclose()

    async def audio(self) -> bytes:
        return b"".join([chunk.audio async for chunk in self])


class AsyncTtsClient:
    """Speech synthesis and stored voices: `client.tts`."""

    def __init__(self, client: AsyncClient):
        self._client = client
        self.stub = tts_pb2_grpc.TtsServiceStub(client.channel)

    async def synthesize(
        self, text: str, *, request_id: str = "", timeout=DEFAULT, **options
    ) -> Speech:
        """See Client.tts.synthesize."""
        if options.get("reference_audio") is not None:
            options["reference_audio"] = await asyncio.to_thread(
                read_bytes, options["reference_audio"]
            )
        request = tts_pb2.SynthesizeRequest(
            request_id=request_id, text=text, config=req.synthesis_config(**options)
        )
        r = await self._client._unary(self.stub.Synthesize, request, timeout)
        return Speech(
            r.audio,
            r.sample_rate_hertz,
            seconds(r.audio_duration),
            req.normalized_format(options.get("format")),
            r.model,
            r.seed,
            options.get("voice") or options.get("preset_voice") or "",
            text,
            [(s.text, seconds(s.start_offset), seconds(s.end_offset)) for s in r.sentences],
            r,
        )

    def stream(
        self,
        pieces: Iterable[str] | AsyncIterable[str] | str,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> AsyncSynthesisStream:
        """See Client.tts.stream; `pieces` may be a sync or async iterable."""
        if isinstance(pieces, str):
            pieces = [pieces]
        if options.get("reference_audio") is not None:
            options["reference_audio"] = read_bytes(options["reference_audio"])
        first = tts_pb2.StreamingSynthesizeRequest(
            streaming_config=tts_pb2.StreamingSynthesisConfig(
                request_id=request_id, config=req.synthesis_config(**options)
            )
        )
        guard = RequestGuard(
            first,
            lambda piece: (
                [req.tts_text_message(p) for p in split_text(piece)]
                if isinstance(piece, str)
                else req.tts_text_message(piece)
            ),
        )
        return AsyncSynthesisStream(
            self._client._stream(self.stub.StreamingSynthesize, guard, pieces, timeout)
        )

    async def create_voice(
        self,
        voice_id: str,
        audio,
        transcript: str,
        *,
        language: str | None = None,
        display_name: str | None = None,
        model: str | None = None,
        encoding: str | None = None,
        sample_rate: int | None = None,
        timeout: float | None = DEFAULT,
    ) -> Voice:
        """See Client.tts.create_voice."""
        request = tts_pb2.CreateVoiceRequest(
            voice_id=voice_id.removeprefix("voices/"),
            voice=tts_pb2.Voice(
                transcript=transcript,
                language_code=language or "",
                display_name=display_name or "",
                model=model or "",
            ),
            reference_audio=await asyncio.to_thread(read_bytes, audio),
            reference_audio_format=req.audio_format(encoding, sample_rate),
        )
        return Voice.from_proto(await self._client._unary(self.stub.CreateVoice, request, timeout))

    async def get_voice(self, name: str, timeout: float | None = DEFAULT) -> Voice:
        request = tts_pb2.GetVoiceRequest(name=req.voice_name(name))
        return Voice.from_proto(await self._client._unary(self.stub.GetVoice, request, timeout))

    async def list_voices(self, page_size: int = 0, timeout=DEFAULT) -> list[Voice]:
        voices: list[Voice] = []
        token = ""
        while True:
            request = tts_pb2.ListVoicesRequest(page_size=page_size, page_token=token)
            reply = await self._client._unary(self.stub.ListVoices, request, timeout)
            voices += [Voice.from_proto(v) for v in reply.voices]
            token = reply.next_page_token
            if not token:
                return voices

    async def delete_voice(self, name: str, timeout: float | None = DEFAULT) -> None:
        request = tts_pb2.DeleteVoiceRequest(name=req.voice_name(name))
        await self._client._unary(self.stub.DeleteVoice, request, timeout)

    async def models(self, timeout: float | None = DEFAULT) -> list[ModelInfo]:
        reply = await self._client._unary(
            self.stub.ListModels, tts_pb2.ListModelsRequest(), timeout
        )
        return [ModelInfo.from_proto("tts", m) for m in reply.models]
