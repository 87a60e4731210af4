"""The blocking client: `Client(...)` with `.asr`, `.translate`, `.tts` and `.jobs`.

What each method does is written once, for this client and the asyncio one (_asr.py,
_translate.py, _tts.py; see _operations.py). This module is how the blocking client runs it:
calls that block, gRPC futures for calls in parallel, and iterators for streams.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from speechmesh.client import _operations as ops
from speechmesh.client._connection import SERVICES, Connection
from speechmesh.client._job_steps import JobsOperations
from speechmesh.client._services import AsrOperations, TranslateOperations, TtsOperations
from speechmesh.client.audio import file_chunks
from speechmesh.client.errors import Cancelled, from_rpc_error
from speechmesh.client.realtime import RealtimeClient
from speechmesh.client.types import AudioChunk, Health, ModelInfo, SynthesisSummary

__all__ = [
    "AsrClient",
    "Client",
    "JobsClient",
    "SynthesisStream",
    "TranslateClient",
    "TtsClient",
]


def _call(steps: Callable[..., ops.Steps]) -> Callable:
    def method(self, *args, **kwargs):
        return self._client._run(steps(self, *args, **kwargs))

    return method


def _iterate(stream: Callable[..., ops.Stream]) -> Callable:
    def method(self, *args, **kwargs):
        yield from self._client._stream(stream(self, *args, **kwargs))

    return method


blocking = ops.bind(_call, _iterate, prefix="", module=__name__)
AsrClient = blocking(AsrOperations)
TranslateClient = blocking(TranslateOperations)


class SynthesisStream:
    """The audio of a synthesis stream: iterate it for AudioChunk objects as they arrive;
    `summary` is set once the stream has ended."""

    def __init__(self, responses: Iterator[AudioChunk | SynthesisSummary]):
        self._responses = responses
        self.summary: SynthesisSummary | None = None

    def __iter__(self) -> Iterator[AudioChunk]:
        for item in self._responses:
            if isinstance(item, SynthesisSummary):
                self.summary = item
            else:
                yield item

    def cancel(self) -> None:
        self._responses.close()

    def audio(self) -> bytes:
        """Reads the whole stream: the continuous recording."""
        return b"".join(chunk.audio for chunk in self)


TtsClient = blocking(TtsOperations, synthesis_stream_type=SynthesisStream)
JobsClient = blocking(JobsOperations)


class Client(ops.BaseClient):
    """A blocking client of speechmesh over one channel, to the gateway or to one service.

    Args:
        target: "host:port" (or http:// / https:// URL) of the gateway or a service. Default:
            $SPEECHMESH_TARGET, else localhost:8080 (the gateway of `make run`).
        tls: use TLS (implied by an https:// target or `ca_cert`).
        api_key: sent as `x-api-key` (default $SPEECHMESH_API_KEY).
        token: a bearer token (JWT), sent as `authorization: Bearer ...` (default
            $SPEECHMESH_TOKEN).
        timeout: deadline of unary calls in seconds (None: none). Per-call `timeout=` wins.
        stream_timeout: deadline of streaming calls (default None: none).
        retries: times a unary call is retried when the service answers UNAVAILABLE (gRPC
            retry policy with backoff; streams are never retried). 0: off.
        ca_cert: PEM root certificate(s) (path or bytes) to trust, e.g. a self-signed one.
        tls_server_name: the name to check the server's certificate against, when it differs
            from the target's host.
        keepalive: seconds between HTTP/2 keepalive pings on a busy connection.
        metadata: extra metadata sent with every call.
        options: extra gRPC channel options.
        realtime_url: where `client.realtime` opens its WebSocket (ws:// or wss:// URL, or
            host:port); default: the target's host and port, path /v1/realtime (the gateway's).
    """

    open_channel = Connection.sync_channel
    service_types = (AsrClient, TranslateClient, TtsClient)
    jobs_type = JobsClient
    realtime_type = RealtimeClient
    asr: AsrClient
    translate: TranslateClient
    tts: TtsClient
    jobs: JobsClient
    realtime: RealtimeClient

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def health(
        self, services: Iterable[str] = tuple(SERVICES), timeout: float = 5.0
    ) -> dict[str, Health]:
        """{service: Health} for "asr", "translate", "tts" (grpc.health.v1 through the
        gateway, which routes each check by the x-speechmesh-service header). Raises
        Unavailable when nothing answers at the target at all."""
        return self._run(self._health_steps(services, timeout))

    def models(self) -> list[ModelInfo]:
        """The models of every service, ASR then translate then TTS."""
        return [*self.asr.models(), *self.translate.models(), *self.tts.models()]

    # -- the transport: how the steps of a method are run ------------------------------------

    def _run(self, steps: ops.Steps) -> Any:
        run = ops.Run(steps)
        while run.step is not None:
            try:
                result = self._do(run.step)
            except Exception as error:
                run.fail(error)
            else:
                run.give(result)
        return run.value

    def _do(self, step: ops.Step) -> Any:
        if isinstance(step, ops.Unary):
            return self._unary(step)
        if isinstance(step, ops.Blocking):
            return step.function(*step.args)
        if isinstance(step, ops.ClientStream):
            return self._client_stream(step)
        return self._concurrently(step)

    def _unary(self, call: ops.Unary) -> Any:
        options = self._call_options(call.timeout, self.timeout, call.metadata)
        try:
            return call.method(call.request, **options)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    def _client_stream(self, step: ops.ClientStream) -> Any:
        # A future rather than a blocking call, so that a failing source of messages (or an
        # interruption) can cancel it: the service then keeps nothing of it.
        options = self._call_options(step.timeout, self.stream_timeout)
        future = step.method.future(step.guard.sync(step.items), **options)
        step.guard.call = future
        try:
            reply = future.result()
        except grpc.RpcError as error:
            step.guard.reraise(error)
        except grpc.FutureCancelledError:
            step.guard.raise_error()
            raise Cancelled("the call was cancelled") from None
        except BaseException:
            future.cancel()
            raise
        step.guard.raise_error()
        return reply

    def _concurrently(self, step: ops.Concurrently) -> list:
        # Up to `limit` calls in flight as gRPC futures (no threads), so that an
        # interruption (Ctrl-C) cancels the calls instead of waiting for them.
        finished: queue.Queue[int] = queue.Queue()
        waiting = list(range(len(step.calls)))
        running: dict[int, grpc.Future] = {}
        replies: dict[int, Any] = {}
        try:
            while waiting or running:
                while waiting and len(running) < step.limit:
                    index = waiting.pop(0)
                    call = step.calls[index]
                    options = self._call_options(call.timeout, self.timeout, call.metadata)
                    future = call.method.future(call.request, **options)
                    future.add_done_callback(lambda _future, index=index: finished.put(index))
                    running[index] = future
                index = finished.get()
                try:
                    replies[index] = running.pop(index).result()
                except grpc.RpcError as error:
                    raise from_rpc_error(error) from error
                step.finished(index)
        finally:
            for future in running.values():
                future.cancel()
        return [replies[index] for index in range(len(step.calls))]

    def _stream(self, stream: ops.Stream) -> Iterator:
        call = self._start(stream, stream.guard.sync(stream.items))
        try:
            for response in call:
                if (item := stream.parse(response)) is not None:
                    yield item
        except grpc.RpcError as error:
            stream.guard.reraise(error)
        finally:
            call.cancel()
        stream.guard.raise_error()

    @staticmethod
    def _file_chunks(audio, realtime: bool, chunk_seconds: float) -> Iterator[bytes]:
        return file_chunks(audio, realtime=realtime, chunk_seconds=chunk_seconds)
