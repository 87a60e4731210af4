"""What the client methods do, written once for the blocking and the asyncio client.

A method of a service client is written (in _services.py) as *steps*: a generator that
yields what it needs done and gets each result back, then returns the method's result:

    @operation
    def get_voice(self, name: str, timeout=DEFAULT) -> Voice:
        reply = yield Unary(self.stub.GetVoice, tts_pb2.GetVoiceRequest(name=...), timeout)
        return Voice.from_proto(reply)

The steps are `Unary` (a unary call; the result is the reply), `Blocking` (a blocking function
such as reading a file; the result is its value), `Concurrently` (unary calls a few at a
time; the result is their replies) and `ClientStream` (a client-streaming call such as an
upload; the result is its reply). A failed step raises its exception at the `yield`.

A streaming method (`@streaming`) returns a `Stream` instead: the call, its first message, how
further items become messages, and what each response becomes.

The blocking client (sync.py) and the asyncio client (aio.py) each make their service classes
with `bind`, giving every marked method its own transport: call, or await; iterate, or
iterate asynchronously. What is in between is only here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.client._common import DEFAULT, RequestGuard
from speechmesh.client._connection import SERVICES, Connection
from speechmesh.client.errors import SpeechmeshError, Unavailable
from speechmesh.client.types import Health, ModelInfo
from speechmesh.runtime.registry import SERVICE_HEADER

T = TypeVar("T")
S = TypeVar("S")


@dataclasses.dataclass(frozen=True)
class Unary:
    """A unary call: `method` (a stub's, e.g. `stub.Recognize`) with `request`; the result
    is the reply. `timeout`: seconds, None for none, DEFAULT for the client's."""

    method: Callable
    request: Message
    timeout: Any = DEFAULT
    metadata: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Blocking:
    """A blocking function (reading or decoding a file); the result is its value. The asyncio
    client runs it in a worker thread."""

    function: Callable
    args: tuple = ()


@dataclasses.dataclass(frozen=True)
class Concurrently:
    """Unary calls, at most `limit` in flight; the result is their replies, in order.
    `finished(index)` is called as each call succeeds; the first failure cancels the calls
    still in flight and is raised."""

    calls: list[Unary]
    limit: int
    finished: Callable[[int], None]


@dataclasses.dataclass(frozen=True)
class ClientStream:
    """A client-streaming call (an upload): `method` (a stub's) fed by `guard` with the
    messages of `items`; the result is its one reply. `timeout` as for streams (DEFAULT: the
    client's stream_timeout)."""

    method: Callable
    guard: RequestGuard
    items: Any
    timeout: Any = DEFAULT


Step = Unary | Blocking | Concurrently | ClientStream
#: An operation's steps: yields steps, is sent their results, returns the method's result.
Steps = Generator[Step, Any, T]


@dataclasses.dataclass(frozen=True)
class Stream:
    """A streaming call: `method` (a stub's) fed by `guard` (the first message, then `items`
    converted); each response becomes `parse(response)` (None: nothing to yield)."""

    method: Callable
    guard: RequestGuard
    items: Any
    timeout: Any
    parse: Callable[[Any], Any]


class Run:
    """One run of an operation: `step` is what to do next (None once it has returned its
    `value`); answer it with `give(result)`, or `fail(error)` to raise the error into it."""

    def __init__(self, steps: Steps):
        self._steps = steps
        self.step: Step | None = None
        self.value: Any = None
        self._advance(steps.send, None)

    def give(self, result: Any) -> None:
        self._advance(self._steps.send, result)

    def fail(self, error: BaseException) -> None:
        self._advance(self._steps.throw, error)

    def _advance(self, resume: Callable, argument: Any) -> None:
        try:
            self.step = resume(argument)
        except StopIteration as done:
            self.step, self.value = None, done.value


def operation(steps: Callable[..., Steps]) -> Callable[..., Any]:
    """Marks a method written as steps; `bind` makes it a client method. Its return
    annotation is what the client method returns."""
    steps._client_method = "steps"  # type: ignore[attr-defined]
    return steps


def streaming(build: Callable[..., Stream]) -> Callable[..., Any]:
    """Marks a method that returns a Stream; `bind` makes it a client method that iterates
    the responses (lazily: the call starts at the first item)."""
    build._client_method = "stream"  # type: ignore[attr-defined]
    return build


def bind(
    unary: Callable[[Callable], Callable],
    stream: Callable[[Callable], Callable],
    *,
    prefix: str,
    module: str,
) -> Callable[..., type]:
    """How one transport makes the client class of a service: `make(operations, **attributes)`
    is a subclass of `operations` (e.g. AsrOperations -> f"{prefix}AsrClient", in `module`)
    in which every method marked with `operation` (with `streaming`) is `unary(method)`
    (`stream(method)`): the client method of this transport. Name, docstring and signature
    stay those of the method written."""
    makers = {"steps": unary, "stream": stream}

    def make(operations: type[S], **attributes: Any) -> type[S]:
        name = prefix + operations.__name__.removesuffix("Operations") + "Client"
        namespace = {"__module__": module, "__qualname__": name, "__doc__": operations.__doc__}
        for attribute in dir(operations):
            written = getattr(operations, attribute)
            kind = getattr(written, "_client_method", None)
            if kind in makers:
                method = functools.wraps(written)(makers[kind](written))
                method.__qualname__ = f"{name}.{attribute}"
                namespace[attribute] = method
        return type(name, (operations,), {**namespace, **attributes})

    return make


def source_name(audio: Any) -> str:
    """How to name an audio source in a message: its path, or "audio"."""
    return str(audio) if isinstance(audio, (str, os.PathLike)) else "audio"


class Service:
    """What a service's client holds: the client it belongs to, and its stub on the client's
    channel; and what every service answers: its models."""

    #: The service's short name ("asr") and its stub and ListModels request types.
    name: str
    stub_type: type
    models_request: type

    def __init__(self, client: BaseClient):
        self._client = client
        self.stub = self.stub_type(client.channel)

    @operation
    def models(self, timeout: float | None = DEFAULT) -> list[ModelInfo]:
        """The models the service has loaded."""
        reply = yield Unary(self.stub.ListModels, self.models_request(), timeout)
        return [ModelInfo.from_proto(self.name, model) for model in reply.models]


class BaseClient:
    """The state the blocking and the asyncio client share: the connection, the default
    deadlines, the channel, the service clients, the jobs client and the health stub."""

    #: Opens the channel of this transport (Connection.sync_channel or .aio_channel).
    open_channel: Callable[[Connection], Any]
    #: The client classes of ASR, translation and TTS in this transport.
    service_types: tuple[type[Service], type[Service], type[Service]]
    #: The client class of long-running jobs (`client.jobs`) in this transport.
    jobs_type: type
    #: The client class of realtime transcription over WebSocket (`client.realtime`).
    realtime_type: type

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
        realtime_url: str | None = None,
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
        self.channel = type(self).open_channel(self.connection)
        asr, translate, tts = self.service_types
        self.asr = asr(self)
        self.translate = translate(self)
        self.tts = tts(self)
        self.jobs = self.jobs_type(self)
        self.realtime_url = realtime_url
        self.realtime = self.realtime_type(self)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def _call_options(self, timeout: Any, default: float | None, metadata=()) -> dict:
        """The keyword arguments of a call: its deadline and metadata."""
        return {
            "timeout": default if timeout is DEFAULT else timeout,
            "metadata": (*self.connection.metadata, *metadata),
        }

    def _start(self, stream: Stream, requests: Any) -> Any:
        """Starts a streaming call with its request messages (see RequestGuard)."""
        call = stream.method(requests, **self._call_options(stream.timeout, self.stream_timeout))
        stream.guard.call = call
        return call

    def _health_steps(self, services: Iterable[str], timeout: float) -> Steps[dict[str, Health]]:
        """{service: Health}: grpc.health.v1 Check for each (through the gateway, which routes
        each check by the x-speechmesh-service header). Unavailable is raised when nothing
        answers at the target at all."""
        found: dict[str, Health] = {}
        for name in services:
            request = health_pb2.HealthCheckRequest(service=SERVICES[name].full_name)
            try:
                reply = yield Unary(self._health.Check, request, timeout, ((SERVICE_HEADER, name),))
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
