"""The asyncio client: `AsyncClient(...)` with `.asr`, `.translate`, `.tts` and `.jobs`.

The same methods as the blocking Client, as coroutines; streaming methods return async
iterators and take sync or async iterables (a sync iterable is read in a worker thread, so a
blocking source such as a microphone does not stall the event loop). What each method does is
written once for both clients (_asr.py, _translate.py, _tts.py; see _operations.py); this
module is how the asyncio client runs it: awaited calls, blocking work in worker threads, a
task group for calls in parallel, and async iterators for streams.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc

from speechmesh.client import _operations as ops
from speechmesh.client._connection import SERVICES, Connection
from speechmesh.client._job_steps import JobsOperations
from speechmesh.client._services import AsrOperations, TranslateOperations, TtsOperations
from speechmesh.client.audio import STREAM_RATE, apaced, chunks, decode, read_bytes, to_linear16
from speechmesh.client.errors import SpeechmeshError, from_rpc_error
from speechmesh.client.realtime import AsyncRealtimeClient
from speechmesh.client.types import AudioChunk, Health, ModelInfo, SynthesisSummary

__all__ = [
    "AsyncAsrClient",
    "AsyncClient",
    "AsyncJobsClient",
    "AsyncSynthesisStream",
    "AsyncTranslateClient",
    "AsyncTtsClient",
]


def _await(steps: Callable[..., ops.Steps]) -> Callable:
    async def method(self, *args, **kwargs):
        return await self._client._run(steps(self, *args, **kwargs))

    return method


def _iterate(stream: Callable[..., ops.Stream]) -> Callable:
    async def method(self, *args, **kwargs):
        async for item in self._client._stream(stream(self, *args, **kwargs)):
            yield item

    # The method written says it returns an Iterator: here, an AsyncIterator.
    signature = inspect.signature(stream)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=f"Async{signature.return_annotation}"
    )
    return method


asynchronous = ops.bind(_await, _iterate, prefix="Async", module=__name__)
AsyncAsrClient = asynchronous(AsrOperations)
AsyncTranslateClient = asynchronous(TranslateOperations)


class AsyncSynthesisStream:
    """The audio of a synthesis stream: `async for chunk in stream`; `summary` is set once
    the stream has ended."""

    def __init__(self, responses: AsyncIterator[AudioChunk | SynthesisSummary]):
        self._responses = responses
        self.summary: SynthesisSummary | None = None

    async def __aiter__(self) -> AsyncIterator[AudioChunk]:
        async for item in self._responses:
            if isinstance(item, SynthesisSummary):
                self.summary = item
            else:
                yield item

    async def cancel(self) -> None:
        await self._responses.aclose()

    async def audio(self) -> bytes:
        """Reads the whole stream: the continuous recording."""
        return b"".join([chunk.audio async for chunk in self])


AsyncTtsClient = asynchronous(TtsOperations, synthesis_stream_type=AsyncSynthesisStream)
AsyncJobsClient = asynchronous(JobsOperations)


class AsyncClient(ops.BaseClient):
    """An asyncio client of speechmesh; the arguments are those of `Client`.

    Use it as `async with AsyncClient(...) as client:`, or call `await client.close()`.
    """

    open_channel = Connection.aio_channel
    service_types = (AsyncAsrClient, AsyncTranslateClient, AsyncTtsClient)
    jobs_type = AsyncJobsClient
    realtime_type = AsyncRealtimeClient
    asr: AsyncAsrClient
    translate: AsyncTranslateClient
    tts: AsyncTtsClient
    jobs: AsyncJobsClient
    realtime: AsyncRealtimeClient

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def health(
        self, services: Iterable[str] = tuple(SERVICES), timeout: float = 5.0
    ) -> dict[str, Health]:
        """{service: Health}; see Client.health."""
        return await self._run(self._health_steps(services, timeout))

    async def models(self) -> list[ModelInfo]:
        """The models of every service, ASR then translate then TTS."""
        return [
            *await self.asr.models(),
            *await self.translate.models(),
            *await self.tts.models(),
        ]

    # -- the transport: how the steps of a method are run ------------------------------------

    async def _run(self, steps: ops.Steps) -> Any:
        run = ops.Run(steps)
        while run.step is not None:
            try:
                result = await self._do(run.step)
            except Exception as error:
                run.fail(error)
            else:
                run.give(result)
        return run.value

    async def _do(self, step: ops.Step) -> Any:
        if isinstance(step, ops.Unary):
            return await self._unary(step)
        if isinstance(step, ops.Blocking):
            return await asyncio.to_thread(step.function, *step.args)
        if isinstance(step, ops.ClientStream):
            return await self._client_stream(step)
        return await self._concurrently(step)

    async def _unary(self, call: ops.Unary) -> Any:
        options = self._call_options(call.timeout, self.timeout, call.metadata)
        try:
            return await call.method(call.request, **options)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def _client_stream(self, step: ops.ClientStream) -> Any:
        options = self._call_options(step.timeout, self.stream_timeout)
        call = step.method(step.guard.aio(step.items), **options)
        step.guard.call = call
        try:
            reply = await call
        # A CancelledError too: the messages' source failed and cancelled the call.
        except (grpc.RpcError, asyncio.CancelledError) as error:
            step.guard.reraise(error)
        step.guard.raise_error()
        return reply

    async def _concurrently(self, step: ops.Concurrently) -> list:
        limit = asyncio.Semaphore(step.limit)

        async def one(index: int) -> Any:
            async with limit:
                reply = await self._unary(step.calls[index])
            step.finished(index)
            return reply

        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the other calls
                tasks = [group.create_task(one(index)) for index in range(len(step.calls))]
        except* SpeechmeshError as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _stream(self, stream: ops.Stream) -> AsyncIterator:
        call = self._start(stream, stream.guard.aio(stream.items))
        try:
            async for response in call:
                if (item := stream.parse(response)) is not None:
                    yield item
        # A CancelledError too: the items' source failed and cancelled the call.
        except (grpc.RpcError, asyncio.CancelledError) as error:
            stream.guard.reraise(error)
        finally:
            call.cancel()
        stream.guard.raise_error()

    @staticmethod
    async def _file_chunks(audio, realtime: bool, chunk_seconds: float) -> AsyncIterator[bytes]:
        samples = await asyncio.to_thread(lambda: decode(read_bytes(audio), ops.source_name(audio)))
        pieces = chunks(to_linear16(samples), STREAM_RATE, chunk_seconds)
        if realtime:
            async for piece in apaced(pieces, chunk_seconds):
                yield piece
        else:
            for piece in pieces:
                yield piece
