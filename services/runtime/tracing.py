"""Traces: W3C `traceparent` through the gateway, every service and their calls to each other,
as OpenTelemetry spans exported by OTLP/gRPC, only when an endpoint is set.

Switch: the standard variables. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://jaeger:4317`; `http://` is plaintext, `https://`
TLS) turns tracing on; `OTEL_SERVICE_NAME` names the service (default `speechmesh-<service>`);
`OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` sample as the SDK reads them (default
`parentbased_always_on`: a service follows the gateway's or the caller's decision);
`OTEL_PROPAGATORS` picks the propagators (default `tracecontext,baggage`);
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keeps it off with an endpoint set.

Off (no endpoint), nothing of OpenTelemetry is imported and no span object is made: `TRACER`
is None, and each place that would trace tests that once (the interceptor per RPC, the batcher
per job, the peers' channels when they open, the log processor per line).

On, `configure(service)` (called once per process by `speechmesh serve`) builds a
TracerProvider of this module's own (the global one is left alone, so tests can switch tracing
on and off in one process) with a BatchSpanProcessor and the OTLP/gRPC exporter, and:

- every RPC gets a SERVER span named after its gRPC method (`speechmesh.asr.v1.AsrService/
  Recognize`), the child of the caller's `traceparent`, with `rpc.system`, `rpc.service`,
  `rpc.method`, `rpc.grpc.status_code` and `speechmesh.request_id`
  (speechmesh.runtime.interceptor);
- every batcher job gets a span `batch <model>` under the span of the request that submitted it,
  from the moment it was queued to the end of the forward pass that served it, with the batch's
  attributes (`batch.size`, `batch.id`, this job's `queue.wait_ms`, the batch's
  `batch.queue_wait_max_ms`, `speechmesh.model`) and links to the spans of the other requests
  in the same batch (speechmesh.inference.batcher). One batch serves several requests, and this
  way each request's trace holds the gateway's span, the service's span and its batch span with
  every parent link intact, rather than only the request that happened to lead the batch; the
  jobs of one forward pass share `batch.id`. The worker thread that runs the batch carries the
  context of the batch's first job explicitly (contextvars do not follow plain threads), so what
  the engine logs there carries a trace id;
- the calls a service makes to its peers (speechmesh.runtime.peers: ASR's model listing, the
  translate cascade's Recognize, GetVoice and Synthesize) get CLIENT spans and send
  `traceparent` on;
- log lines carry `trace_id` and `span_id` while a span is current (speechmesh.runtime.logging).

Why OTLP over gRPC and not HTTP: the services already depend on grpcio (the exporter adds only
the generated OTLP classes), and the gateway's Envoy exports with its OpenTelemetry tracer over
gRPC too, so one collector port (4317) takes both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

#: The variables that name the OTLP endpoint, the traces-specific one first.
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
#: The most links a batch span carries to the other requests of its batch.
MAX_BATCH_LINKS = 32

#: The tracer while tracing is on; None while off (the one branch the hot paths take).
TRACER: Any = None
_provider: Any = None
_otel: Any = None  # the OpenTelemetry modules, imported by configure()


def endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The OTLP endpoint the environment sets ("" when none, or when tracing is switched off
    by OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return ""
    for name in ENDPOINT_ENVS:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def service_name(service: str, environ: Mapping[str, str] | None = None) -> str:
    """OTEL_SERVICE_NAME, or speechmesh-<service>."""
    env = os.environ if environ is None else environ
    return env.get(SERVICE_NAME_ENV, "").strip() or f"speechmesh-{service}"


def enabled() -> bool:
    return TRACER is not None


def configure(service: str, exporter: Any = None) -> bool:
    """Switches tracing on for this process when an OTLP endpoint is set (or an `exporter` is
    given: tests); whether it is on. Without either it imports nothing and does nothing."""
    global TRACER, _provider, _otel
    if exporter is None and not endpoint():
        return False
    shutdown()
    from types import SimpleNamespace

    from opentelemetry import context, propagate, trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    # The sampler is the SDK's default: OTEL_TRACES_SAMPLER(_ARG), else parentbased_always_on.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name(service)}))
    provider.add_span_processor(processor)
    _otel = SimpleNamespace(
        context=context,
        propagate=propagate,
        trace=trace,
        Link=Link,
        SpanKind=SpanKind,
        Status=Status,
        StatusCode=StatusCode,
    )
    _provider = provider
    TRACER = provider.get_tracer("speechmesh")
    return True


def shutdown() -> None:
    """Exports what is left and switches tracing off."""
    global TRACER, _provider
    provider, _provider, TRACER = _provider, None, None
    if provider is not None:
        provider.shutdown()


def force_flush(timeout_ms: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_ms)


# -- server spans (speechmesh.runtime.interceptor) -------------------------------------------


def _carrier(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    return {key.lower(): value for key, value in metadata or () if isinstance(value, str)}


class ServerSpan:
    """The span of one RPC, current in its task from `start_server_span` to `end`."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: Any):
        self.span = span
        self.token = token

    def end(self, code: Any, request_id: str, message: str = "", detach: bool = True) -> None:
        span = self.span
        if request_id:
            span.set_attribute("speechmesh.request_id", request_id)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code.value[0] != 0:
            span.set_status(_otel.Status(_otel.StatusCode.ERROR, message or code.name))
        span.end()
        if detach and self.token is not None:
            _otel.context.detach(self.token)
            self.token = None


def start_server_span(
    full_method: str, metadata: Iterable[tuple[str, str | bytes]] | None
) -> ServerSpan:
    """A SERVER span for the RPC `full_method` ("/package.Service/Method"), the child of the
    caller's traceparent in `metadata`, made current in this task. Only while TRACER is set."""
    name = full_method.lstrip("/")
    rpc_service, _, rpc_method = name.rpartition("/")
    parent = _otel.propagate.extract(_carrier(metadata))
    span = TRACER.start_span(
        name,
        context=parent,
        kind=_otel.SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": rpc_method},
    )
    token = _otel.context.attach(_otel.trace.set_span_in_context(span, parent))
    return ServerSpan(span, token)


# -- client spans and propagation (speechmesh.runtime.peers) ---------------------------------


def client_interceptors() -> list:
    """The interceptors a channel to a peer carries: [] while tracing is off."""
    if TRACER is None:
        return []
    return [_client_interceptor()]


def _client_interceptor_class() -> type:
    import grpc

    class ClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
        """A CLIENT span per unary call, its traceparent sent in the call's metadata."""

        async def intercept_unary_unary(self, continuation, details, request):
            method = details.method
            if isinstance(method, bytes):
                method = method.decode()
            name = method.lstrip("/")
            rpc_service, _, rpc_method = name.rpartition("/")
            span = TRACER.start_span(
                name,
                kind=_otel.SpanKind.CLIENT,
                attributes={
                    "rpc.system": "grpc",
                    "rpc.service": rpc_service,
                    "rpc.method": rpc_method,
                },
            )
            carrier: dict[str, str] = {}
            _otel.propagate.inject(carrier, context=_otel.trace.set_span_in_context(span))
            metadata = grpc.aio.Metadata(*(details.metadata or ()))
            for key, value in carrier.items():
                metadata[key] = value
            details = grpc.aio.ClientCallDetails(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                details.wait_for_ready,
            )
            try:
                call = await continuation(details, request)
                code = await call.code()
            except BaseException as error:
                span.record_exception(error)
                span.set_status(_otel.Status(_otel.StatusCode.ERROR, type(error).__name__))
                span.end()
                raise
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code.value[0] != 0:
                span.set_status(_otel.Status(_otel.StatusCode.ERROR, code.name))
            span.end()
            return call

    return ClientInterceptor


_client_class: type | None = None


def _client_interceptor():
    """A client interceptor (its class is made on first use, importing grpc then)."""
    global _client_class
    if _client_class is None:
        _client_class = _client_interceptor_class()
    return _client_class()


# -- batch spans (speechmesh.inference.batcher) ----------------------------------------------


def capture() -> tuple[Any, int]:
    """What a job carries into the batcher: the submitter's context and when it queued (ns).
    Only while TRACER is set."""
    return _otel.context.get_current(), time.time_ns()


def batch_spans(
    model: str, batch_id: str, captured: Sequence[tuple[Any, int] | None], priority: int
) -> list:
    """One span per job of a batch starting now (see the module's doc), each the child of the
    span that submitted the job; [] while tracing is off or no job was captured."""
    if TRACER is None or not any(captured):
        return []
    now = time.time_ns()
    waits = [(now - c[1]) / 1e6 if c else 0.0 for c in captured]
    parents = [
        _otel.trace.get_current_span(c[0]).get_span_context() if c else None for c in captured
    ]
    spans = []
    for i, item in enumerate(captured):
        if item is None:
            spans.append(None)
            continue
        links = [
            _otel.Link(other, {"speechmesh.link": "same batch"})
            for j, other in enumerate(parents)
            if j != i and other is not None and other.is_valid
        ][:MAX_BATCH_LINKS]
        span = TRACER.start_span(
            f"batch {model}",
            context=item[0],
            kind=_otel.SpanKind.INTERNAL,
            start_time=item[1],
            links=links,
            attributes={
                "speechmesh.model": model,
                "batch.id": batch_id,
                "batch.size": len(captured),
                "batch.priority": priority,
                "queue.wait_ms": round(waits[i], 3),
                "batch.queue_wait_max_ms": round(max(waits), 3),
            },
        )
        span.add_event("batch.start", timestamp=now)
        spans.append(span)
    return spans


def end_batch_spans(spans: Sequence, results: Sequence) -> None:
    for span, result in zip(spans, results, strict=False):
        if span is None:
            continue
        if isinstance(result, BaseException):
            span.set_status(_otel.Status(_otel.StatusCode.ERROR, type(result).__name__))
        span.end()


def in_span(function: Callable, spans: Sequence) -> Callable:
    """`function` run with the first of `spans` current: for the batch's worker thread, which
    inherits no context of its own."""
    lead = next((span for span in spans if span is not None), None)
    if lead is None:
        return function
    ctx = _otel.trace.set_span_in_context(lead)

    def run(*args):
        token = _otel.context.attach(ctx)
        try:
            return function(*args)
        finally:
            _otel.context.detach(token)

    return run


# -- logs ------------------------------------------------------------------------------------


def add_trace_ids(logger: Any, method: str, event: dict) -> dict:
    """structlog processor: trace_id and span_id of the current span, when tracing is on."""
    if TRACER is None:
        return event
    span_context = _otel.trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event.setdefault("span_id", format(span_context.span_id, "016x"))
    return event
