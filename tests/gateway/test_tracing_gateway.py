"""Traces across Envoy and the services: `speechmesh up` (tiny checkpoints) with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/gRPC receiver run by this test (a
TraceService/Export server on the opentelemetry-proto classes), so the real Envoy's
OpenTelemetry tracer and every service export to it.

- A Recognize through the gateway with the client's traceparent arrives as one trace: the
  gateway's spans (the first the child of the client's span), the ASR service's SERVER span
  under the gateway's, and the batch span under the ASR span; the ASR log line of the call
  carries the trace id.
- A cascade TranslateSpeech shows, in the same trace, translate's SERVER span, its CLIENT spans
  for ASR Recognize and TTS Synthesize, and the SERVER spans of ASR and TTS under those.
- The rendered configuration: tracing and the collector cluster only with an endpoint, and
  `envoy --mode validate` passes.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest
import yaml

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_process import validate_config, write_config
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
from tests.gateway.conftest import Up, run_up
from tests.sounds import voice_like, wav

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
RECOGNIZE = "speechmesh.asr.v1.AsrService/Recognize"
SYNTHESIZE = "speechmesh.tts.v1.TtsService/Synthesize"
TRANSLATE_SPEECH = "speechmesh.translate.v1.TranslateService/TranslateSpeech"


@dataclasses.dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict


def _value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Receiver:
    """An OTLP/gRPC trace receiver: keeps every span exported to it."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.spans: list[Span] = []
        self._lock = threading.Lock()
        receiver = self

        class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                receiver._take(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _take(self, request) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.spans.extend(found)

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait(
        self, trace_id: str, done: Callable[[list[Span]], bool], timeout_s: float = 30.0
    ) -> list[Span]:
        """The spans of `trace_id` once `done` holds of them (Envoy flushes every 5 s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.trace(trace_id)
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                shown = "\n".join(f"  {s}" for s in spans)
                raise AssertionError(f"trace {trace_id} incomplete after {timeout_s} s:\n{shown}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.server.stop(0)


@pytest.fixture(scope="module")
def traced_up(tmp_path_factory, tiny_cache, receiver) -> Iterator[Up]:
    """`speechmesh up` (tiny checkpoints) with every process exporting spans to `receiver`."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # the services export within 0.2 s
    }
    with run_up(tmp_path_factory, tiny_cache, ["asr", "translate", "tts"], env) as suite:
        yield suite


def new_traceparent() -> tuple[str, str, str]:
    """(traceparent, trace id, span id) of a client's span, sampled."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def find(spans: list[Span], service: str, name: str, kind: int | None = None) -> list[Span]:
    return [
        s
        for s in spans
        if s.service == service and s.name == name and (kind is None or s.kind == kind)
    ]


def check_connected(spans: list[Span], client_span: str) -> dict[str, Span]:
    """Every span's parent is in the trace, except the gateway's first, whose parent is the
    client's span: one tree, parent links intact. Returns the spans by id."""
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if s.parent_id not in by_id]
    assert [(r.service, r.parent_id) for r in roots] == [("speechmesh-gateway", client_span)], roots
    return by_id


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    found = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        found.append(span)
    return found


def test_a_recognize_is_one_trace_from_the_gateway_to_the_batch(traced_up, receiver):
    traceparent, trace_id, client_span = new_traceparent()
    request = asr_pb2.RecognizeRequest(
        audio=wav(voice_like(1.0)),
        config=asr_pb2.RecognitionConfig(language_code="en"),
        request_id="traced-recognize",
    )
    with grpc.insecure_channel(traced_up.gateway.target) as channel:
        asr_pb2_grpc.AsrServiceStub(channel).Recognize(
            request, metadata=[("traceparent", traceparent)], timeout=60
        )

    def complete(spans: list[Span]) -> bool:
        return bool(
            find(spans, "speechmesh-asr", RECOGNIZE, SERVER)
            and [s for s in spans if s.name.startswith("batch ")]
            and any(s.parent_id == client_span for s in spans)
        )

    spans = receiver.wait(trace_id, complete)
    by_id = check_connected(spans, client_span)
    (server,) = find(spans, "speechmesh-asr", RECOGNIZE, SERVER)
    gateway = by_id[server.parent_id]
    assert gateway.service == "speechmesh-gateway"
    assert all(s.service == "speechmesh-gateway" for s in ancestors(server, by_id))
    assert server.attributes["rpc.system"] == "grpc"
    assert server.attributes["rpc.service"] == "speechmesh.asr.v1.AsrService"
    assert server.attributes["rpc.method"] == "Recognize"
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert server.attributes["speechmesh.request_id"] == "traced-recognize"
    batches = [s for s in spans if s.name.startswith("batch ")]
    for batch in batches:
        assert batch.service == "speechmesh-asr"
        assert batch.parent_id == server.span_id
        assert batch.attributes["batch.size"] >= 1
        assert batch.attributes["queue.wait_ms"] >= 0
        assert batch.attributes["speechmesh.model"]
    # The service's log line of the call carries the trace (and the span of the call).
    logged = [
        json.loads(line.split("] ", 1)[1])
        for line in list(traced_up.lines)
        if line.startswith("[asr] {") and "traced-recognize" in line
    ]
    rpc = [line for line in logged if line.get("event") == "rpc"]
    assert rpc, logged
    assert rpc[0]["trace_id"] == trace_id
    assert rpc[0]["span_id"] == server.span_id


def test_a_cascade_shows_its_asr_and_tts_calls_in_the_same_trace(traced_up, receiver):
    traceparent, trace_id, client_span = new_traceparent()
    config = translate_pb2.SpeechTranslationConfig(
        source_language_code="en",
        target_language_code="en",
        output_modalities=[translate_pb2.MODALITY_TEXT, translate_pb2.MODALITY_SPEECH],
        path=translate_pb2.SPEECH_TRANSLATION_PATH_CASCADE,
    )
    request = translate_pb2.TranslateSpeechRequest(audio=wav(voice_like(3.0)), config=config)
    with grpc.insecure_channel(traced_up.gateway.target) as channel:
        reply = translate_pb2_grpc.TranslateServiceStub(channel).TranslateSpeech(
            request, metadata=[("traceparent", traceparent)], timeout=120
        )
    assert reply.segments and reply.translated_audio  # the cascade spoke: it called TTS

    def complete(spans: list[Span]) -> bool:
        return bool(
            find(spans, "speechmesh-translate", TRANSLATE_SPEECH, SERVER)
            and find(spans, "speechmesh-asr", RECOGNIZE, SERVER)
            and find(spans, "speechmesh-tts", SYNTHESIZE, SERVER)
            and any(s.parent_id == client_span for s in spans)
        )

    spans = receiver.wait(trace_id, complete)
    by_id = check_connected(spans, client_span)
    (translate,) = find(spans, "speechmesh-translate", TRANSLATE_SPEECH, SERVER)
    assert by_id[translate.parent_id].service == "speechmesh-gateway"
    for service, name in (("speechmesh-asr", RECOGNIZE), ("speechmesh-tts", SYNTHESIZE)):
        servers = find(spans, service, name, SERVER)
        assert servers, (service, name)
        for server in servers:
            client = by_id[server.parent_id]
            # The peer's call: translate's CLIENT span of the same method, under its RPC.
            assert (client.service, client.name, client.kind) == (
                "speechmesh-translate",
                name,
                CLIENT,
            )
            assert translate in ancestors(client, by_id)
            assert client.attributes["rpc.grpc.status_code"] == 0
    tts_batches = [
        s for s in spans if s.service == "speechmesh-tts" and s.name.startswith("batch ")
    ]
    assert tts_batches
    assert all(by_id[b.parent_id].name == SYNTHESIZE for b in tts_batches)


# -- the rendered configuration ------------------------------------------------------------------


def test_tracing_is_rendered_only_with_an_endpoint(tmp_path, monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    plain = GatewaySettings()
    assert plain.otlp_endpoint == ""
    config = yaml.safe_load(write_config(plain, tmp_path / "plain.yaml").read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert "tracing" not in manager["typed_config"]
    assert "otlp_collector" not in {c["name"] for c in config["static_resources"]["clusters"]}

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    traced = GatewaySettings()
    assert traced.otlp_endpoint == "http://collector:4317"
    path = write_config(traced, tmp_path / "traced.yaml")
    ok, output = validate_config(traced, path)
    assert ok, output
    config = yaml.safe_load(path.read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    tracing = manager["typed_config"]["tracing"]
    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
    provider = tracing["provider"]["typed_config"]
    assert provider["service_name"] == "speechmesh-gateway"
    assert provider["grpc_service"]["envoy_grpc"] == {
        "cluster_name": "otlp_collector",
        "authority": "collector:4317",  # what a mesh sidecar routes the export by
    }
    assert tracing["spawn_upstream_span"] is True
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters["otlp_collector"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "collector",
        "port_value": 4317,
    }
    assert "transport_socket" not in clusters["otlp_collector"]
    # The gateway's own setting wins; https:// is TLS.
    own = GatewaySettings(otlp_endpoint="https://traces.example.com")
    path = write_config(own, tmp_path / "tls.yaml")
    ok, output = validate_config(own, path)
    assert ok, output
    cluster = next(
        c
        for c in yaml.safe_load(path.read_text())["static_resources"]["clusters"]
        if c["name"] == "otlp_collector"
    )
    assert cluster["transport_socket"]["typed_config"]["sni"] == "traces.example.com"


@pytest.mark.parametrize("bad", ["ftp://x:4317", "http://x:4317/v1/traces", "http://:4317"])
def test_a_bad_endpoint_is_refused(bad):
    with pytest.raises(ValueError, match="OTLP endpoint"):
        GatewaySettings(otlp_endpoint=bad)
