"""One interceptor for every RPC: request parsing, error mapping, one log event, metrics.

Handlers raise ApiError (or a known domain error); this turns it into a gRPC
status with google.rpc details. Anything unexpected is logged with its
traceback and answered INTERNAL without leaking internals. Servicers add
what they know about a call (request id, audio seconds, characters) to
`call_stats()`, and it lands in the log event and the metrics.

Request bodies reach the handler as bytes and are parsed here (speechmesh.runtime.decoding),
so a body that is not a valid message is INVALID_ARGUMENT, logged and counted like any call.

With tracing on (speechmesh.runtime.tracing), each call but health checks and reflection gets a
SERVER span here, the child of the caller's `traceparent`, current while the handler runs and
ended after the log event (which carries its trace_id); off, that is one `is None` test per call.
"""

from __future__ import annotations

import contextvars
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import structlog
from google.protobuf import descriptor
from google.protobuf.message import Message

from speechmesh.dsp.audio import AudioError
from speechmesh.inference.batcher import QueueFullError
from speechmesh.runtime import errors, metrics, tracing
from speechmesh.runtime.decoding import RequestDecoder

log = structlog.get_logger("speechmesh.rpc")

_QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

#: A status travels in the trailers, which clients cap (gRPC's default soft limit is 8 KiB;
#: a client drops a bigger status and reports RESOURCE_EXHAUSTED instead of the code sent).
#: Messages and details echo what a caller sent (a model or voice name, a language code), so
#: their text is clipped: the message to this many UTF-8 bytes (percent-encoded in
#: grpc-message, up to three times as many), each string in the details to the second.
MAX_MESSAGE_BYTES = 600
MAX_DETAIL_BYTES = 200


@dataclass
class CallStats:
    request_id: str = ""
    audio_seconds: float = 0.0
    characters: int = 0
    #: The caller's address, read when the call starts (grpc may crash reading it from the
    #: context of a call that was cancelled meanwhile).
    peer: str = ""


_CALL: contextvars.ContextVar[CallStats] = contextvars.ContextVar("speechmesh_call")


def call_stats() -> CallStats:
    """The stats of the RPC being handled (a throwaway object outside one)."""
    try:
        return _CALL.get()
    except LookupError:
        return CallStats()


def as_api_error(error: Exception) -> errors.ApiError | None:
    if isinstance(error, errors.ApiError):
        return error
    if isinstance(error, AudioError):
        return errors.invalid_argument("audio", str(error))
    if isinstance(error, QueueFullError):
        return errors.resource_exhausted(str(error), error.retry_after_s)
    if isinstance(error, NotImplementedError):  # a generated servicer's default method
        return errors.ApiError(grpc.StatusCode.UNIMPLEMENTED, "not implemented by this server")
    return None


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str):
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        full_method = details.method
        quiet = full_method.startswith(_QUIET_PREFIXES)
        # grpc passes the bodies through as bytes; the handler parses them (see module doc).
        decoder = None
        if handler.request_deserializer is not None:
            decoder = RequestDecoder(handler.request_deserializer, full_method)
        call = _Call(self.service, full_method, quiet)
        kwargs = dict(request_deserializer=None, response_serializer=handler.response_serializer)
        one = _identity if decoder is None else decoder.parse
        many = _identity if decoder is None else decoder.stream
        if handler.unary_unary:
            behavior = call.unary(handler.unary_unary, one)
            return grpc.unary_unary_rpc_method_handler(behavior, **kwargs)
        if handler.unary_stream:
            behavior = call.stream(handler.unary_stream, one)
            return grpc.unary_stream_rpc_method_handler(behavior, **kwargs)
        if handler.stream_unary:
            behavior = call.unary(handler.stream_unary, many)
            return grpc.stream_unary_rpc_method_handler(behavior, **kwargs)
        behavior = call.stream(handler.stream_stream, many)
        return grpc.stream_stream_rpc_method_handler(behavior, **kwargs)


def _identity(request):
    return request


def _fitted(error: errors.ApiError) -> errors.ApiError:
    """The error with its text clipped to fit in any client's trailers (see MAX_MESSAGE_BYTES)."""
    details = []
    for detail in error.details:
        copy = type(detail)()
        copy.CopyFrom(detail)
        _clip_strings(copy)
        details.append(copy)
    return errors.ApiError(error.code, clip(error.message, MAX_MESSAGE_BYTES), details)


def clip(text: str, limit: int) -> str:
    """`text` if its UTF-8 fits in `limit` bytes, else its start and end around " … ": the end
    of a message says what to do, the start which field."""
    data = text.encode()
    if len(data) <= limit:
        return text
    keep = (limit - len(" … ".encode())) // 2
    if keep <= 0:
        return data[:limit].decode(errors="ignore")
    head = data[:keep].decode(errors="ignore")
    tail = data[len(data) - keep :].decode(errors="ignore")
    return f"{head} … {tail}"


def _clip_strings(message: Message) -> None:
    for field, value in message.ListFields():
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [clip(v, MAX_DETAIL_BYTES) for v in value]
            else:
                setattr(message, field.name, clip(value, MAX_DETAIL_BYTES))
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:  # ErrorInfo.metadata
                for key in list(value):
                    clipped = value[key]
                    if isinstance(clipped, str):
                        value[key] = clip(clipped, MAX_DETAIL_BYTES)
            elif field.is_repeated:
                for item in value:
                    _clip_strings(item)
            else:
                _clip_strings(value)


class _Call:
    def __init__(self, service: str, full_method: str, quiet: bool):
        self.service = service
        self.full_method = full_method
        self.method = full_method.rsplit("/", 1)[-1]
        self.quiet = quiet

    def unary(self, behavior, decode: Callable):
        """`decode` turns what grpc passes (a body, or a stream of them) into the request."""

        async def wrapped(request, context: grpc.aio.ServicerContext):
            stats = CallStats(peer=context.peer())
            _CALL.set(stats)
            span = None
            if tracing.TRACER is not None and not self.quiet:
                span = tracing.start_server_span(self.full_method, context.invocation_metadata())
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                request = decode(request)
                stats.request_id = getattr(request, "request_id", "") or ""
                return await behavior(request, context)
            except BaseException as error:
                code, status = self._classify(error, context, stats)
                if status is not None:
                    await context.abort_with_status(status)
                raise
            finally:
                code = self._record(context, stats, started, code)
                if span is not None:
                    span.end(code, stats.request_id)

        return wrapped

    def stream(self, behavior, decode: Callable):
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with context.write (the stock health Watch) is a coroutine.
            return self.unary(behavior, decode)

        async def wrapped(request, context: grpc.aio.ServicerContext) -> AsyncIterator:
            stats = CallStats(peer=context.peer())
            _CALL.set(stats)
            span = None
            if tracing.TRACER is not None and not self.quiet:
                span = tracing.start_server_span(self.full_method, context.invocation_metadata())
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            gauge = metrics.ACTIVE_STREAMS.labels(self.service, self.method)
            gauge.inc()
            try:
                request = decode(request)
                stats.request_id = getattr(request, "request_id", "") or ""
                async for response in behavior(request, context):
                    yield response
            except BaseException as error:
                code, status = self._classify(error, context, stats)
                if status is not None:
                    await context.abort_with_status(status)
                raise
            finally:
                gauge.dec()
                code = self._record(context, stats, started, code)
                if span is not None:
                    # Left attached: the call's task ends with it, and a generator may be
                    # closed from another context.
                    span.end(code, stats.request_id, detach=False)

        return wrapped

    def _classify(
        self, error: BaseException, context: grpc.aio.ServicerContext, stats: CallStats
    ) -> tuple[grpc.StatusCode, grpc.Status | None]:
        """The code the call ends with, and the status to abort it with (None: as it is)."""
        if isinstance(error, grpc.aio.AbortError):
            return context.code() or grpc.StatusCode.UNKNOWN, None
        if not isinstance(error, Exception):  # CancelledError and friends
            return grpc.StatusCode.CANCELLED, None
        api_error = as_api_error(error)
        if api_error is None:
            log.exception("rpc.internal_error", method=self.method, request_id=stats.request_id)
            api_error = errors.ApiError(
                grpc.StatusCode.INTERNAL,
                f"internal error while handling {self.method}"
                f" (request_id={stats.request_id or '-'}); the server log has the details",
            )
        return api_error.code, _fitted(api_error).to_status()

    def _record(
        self,
        context: grpc.aio.ServicerContext,
        stats: CallStats,
        started: float,
        code: grpc.StatusCode,
    ) -> grpc.StatusCode:
        """Counts and logs the call; returns the code it ended with."""
        if code == grpc.StatusCode.OK and context.code() not in (None, grpc.StatusCode.OK):
            code = context.code()
        elapsed = time.perf_counter() - started
        name = code.name
        metrics.REQUESTS.labels(self.service, self.method, name).inc()
        metrics.LATENCY.labels(self.service, self.method, name).observe(elapsed)
        if stats.audio_seconds:
            metrics.AUDIO_SECONDS.labels(self.service, self.method).inc(stats.audio_seconds)
        emit = log.debug if self.quiet else log.info
        emit(
            "rpc",
            service=self.service,
            method=self.method,
            request_id=stats.request_id,
            peer=stats.peer,
            code=name,
            duration_ms=round(elapsed * 1000, 2),
            audio_seconds=round(stats.audio_seconds, 3),
            characters=stats.characters,
        )
        return code
