"""Tracing (speechmesh.runtime.tracing): off without an OTLP endpoint (nothing of OpenTelemetry
imported, even through a traced call); on, the spans a Recognize makes in-process: the server
span under the caller's traceparent, its batch span, trace ids in logs, client spans on peers'
channels, and a batch of several requests giving each its own span with the batch's attributes.

The exporter here is the SDK's in-memory one (tracing.configure(exporter=...)); the OTLP export
itself, Envoy's spans and the spans of calls between services are in
tests/gateway/test_tracing_gateway.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.inference.batcher import MicroBatcher
from speechmesh.runtime import tracing
from speechmesh.runtime.peers import Peers
from tests.conftest import ROOT, running_asr
from tests.sounds import voice_like, wav

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
RECOGNIZE = "speechmesh.asr.v1.AsrService/Recognize"


def otel_free_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


# -- off ---------------------------------------------------------------------------------------


OFF_SCRIPT = """
import asyncio, json, sys
import grpc
from speechmesh.asr.app import build_app
from speechmesh.asr.config import AsrSettings
from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.runtime import tracing
from speechmesh.runtime.logging import configure_logging
from speechmesh.runtime.server import ServiceHost
from tests.sounds import voice_like, wav

async def main():
    configure_logging("info", "json")
    assert tracing.configure("asr") is False
    settings = AsrSettings(model=sys.argv[1], engine="transformers", host="127.0.0.1", port=0,
                           metrics_port=0, websocket_port=0)
    host = ServiceHost(build_app(settings), settings)
    await host.start()
    await host.ready.wait()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        request = asr_pb2.RecognizeRequest(audio=wav(voice_like(1.0)), request_id="off-1")
        metadata = [("traceparent", sys.argv[2])]
        await asr_pb2_grpc.AsrServiceStub(channel).Recognize(request, metadata=metadata)
    await host.stop(0)
    loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
    print(json.dumps({"loaded": loaded, "tracer": repr(tracing.TRACER)}))

asyncio.run(main())
"""


def test_without_an_endpoint_nothing_of_opentelemetry_loads(tiny_whisper):
    """A whole service answering a call that carries a traceparent, with no OTEL_* variable:
    no OpenTelemetry module is imported, so no span object can exist, and log lines carry no
    trace id."""
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    done = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT, str(tiny_whisper), traceparent],
        cwd=ROOT,
        env=otel_free_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"loaded": [], "tracer": "None"}
    rpc = [json.loads(line) for line in done.stderr.splitlines() if '"event": "rpc"' in line]
    assert [line["request_id"] for line in rpc if line["method"] == "Recognize"] == ["off-1"]
    assert not any("trace_id" in line for line in rpc)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, "http://jaeger:4317"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4317",
            },
            "http://b:4317",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_SDK_DISABLED": "true"}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_TRACES_EXPORTER": "none"}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, ""),
    ],
)
def test_the_endpoint_comes_from_the_standard_variables(environ, expected):
    assert tracing.endpoint(environ) == expected


def test_service_name_defaults_to_speechmesh_service():
    assert tracing.service_name("asr", {}) == "speechmesh-asr"
    assert tracing.service_name("asr", {"OTEL_SERVICE_NAME": "asr-eu"}) == "asr-eu"


def test_configure_without_an_endpoint_is_off(monkeypatch):
    for name in [*tracing.ENDPOINT_ENVS, "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"]:
        monkeypatch.delenv(name, raising=False)
    assert tracing.configure("asr") is False
    assert tracing.TRACER is None
    assert tracing.client_interceptors() == []
    event = {"event": "x"}
    assert tracing.add_trace_ids(None, "info", event) == {"event": "x"}


# -- on, in-process ------------------------------------------------------------------------------


@pytest.fixture
def exporter():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    assert tracing.configure("asr", exporter=memory)
    try:
        yield memory
    finally:
        tracing.shutdown()


def hex_span(span_id: int) -> str:
    return format(span_id, "016x")


def by_name(spans, name: str) -> list:
    return [span for span in spans if span.name == name]


async def test_a_recognize_makes_a_server_span_under_the_caller_and_a_batch_span(
    exporter, tiny_whisper
):
    from opentelemetry.trace import SpanKind

    async with running_asr(tiny_whisper, engine="transformers") as (_, channel):
        request = asr_pb2.RecognizeRequest(audio=wav(voice_like(1.0)), request_id="traced-1")
        metadata = [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01")]
        await asr_pb2_grpc.AsrServiceStub(channel).Recognize(request, metadata=metadata)
    spans = exporter.get_finished_spans()
    (server,) = by_name(spans, RECOGNIZE)
    assert server.kind == SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert hex_span(server.parent.span_id) == PARENT_ID
    assert server.parent.is_remote
    assert dict(server.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": "speechmesh.asr.v1.AsrService",
        "rpc.method": "Recognize",
        "rpc.grpc.status_code": 0,
        "speechmesh.request_id": "traced-1",
    }
    assert server.resource.attributes["service.name"] == "speechmesh-asr"
    batches = [span for span in spans if span.name.startswith("batch ")]
    assert batches, [span.name for span in spans]
    for batch in batches:
        assert batch.context.trace_id == server.context.trace_id
        assert batch.parent.span_id == server.context.span_id
        attributes = batch.attributes
        assert attributes["batch.size"] >= 1
        assert attributes["queue.wait_ms"] >= 0
        assert attributes["batch.queue_wait_max_ms"] >= attributes["queue.wait_ms"]
        assert attributes["speechmesh.model"] == batch.name.removeprefix("batch ")
        assert server.start_time <= batch.start_time <= batch.end_time <= server.end_time
    # Health checks are not traced.
    assert not [span for span in spans if "grpc.health" in span.name]


async def test_a_failed_call_sets_its_code_and_an_error_status(exporter, tiny_whisper):
    import grpc
    from opentelemetry.trace import StatusCode

    async with running_asr(tiny_whisper, engine="transformers") as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError):
            await asr_pb2_grpc.AsrServiceStub(channel).Recognize(
                asr_pb2.RecognizeRequest(audio=b"not audio")
            )
    (server,) = by_name(exporter.get_finished_spans(), RECOGNIZE)
    assert server.attributes["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT
    assert server.status.status_code == StatusCode.ERROR
    assert server.parent is None  # no traceparent: a trace of its own


async def test_peers_calls_get_client_spans_and_send_traceparent(exporter, tiny_whisper):
    from opentelemetry.trace import SpanKind

    async with running_asr(tiny_whisper, engine="transformers") as (host, _):
        peers = Peers({"asr": f"127.0.0.1:{host.port}"})
        try:
            with tracing.TRACER.start_as_current_span("caller") as caller:
                assert await peers.model_names()
        finally:
            await peers.close()
    spans = exporter.get_finished_spans()
    listing = "speechmesh.asr.v1.AsrService/ListModels"
    client = next(s for s in by_name(spans, listing) if s.kind == SpanKind.CLIENT)
    server = next(s for s in by_name(spans, listing) if s.kind == SpanKind.SERVER)
    assert client.parent.span_id == caller.get_span_context().span_id
    assert server.parent.span_id == client.context.span_id
    assert server.context.trace_id == caller.get_span_context().trace_id
    assert client.attributes["rpc.grpc.status_code"] == 0


def test_log_lines_carry_the_current_trace_and_span(exporter):
    with tracing.TRACER.start_as_current_span("work") as span:
        event = tracing.add_trace_ids(None, "info", {"event": "x"})
    context = span.get_span_context()
    assert event == {
        "event": "x",
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
    assert tracing.add_trace_ids(None, "info", {"event": "y"}) == {"event": "y"}


async def test_each_request_of_a_batch_gets_a_span_with_the_batchs_attributes(exporter):
    """Three requests: the first runs alone (it holds the worker), the other two share the next
    batch. Each has its batch span under its own request span; the shared batch's spans carry
    its size and id, each job's queue wait and the batch's longest, and links to the other
    request; the worker thread runs in the batch's first span."""
    release = threading.Event()
    seen_in_worker: list[int] = []

    def run_batch(jobs):
        from opentelemetry import trace

        seen_in_worker.append(trace.get_current_span().get_span_context().span_id)
        if jobs == ["first"]:
            release.wait(5)
        return [f"done {job}" for job in jobs]

    batcher = MicroBatcher("model-x", run_batch, max_batch_size=8, max_wait_s=0.0)

    async def request(job: str):
        with tracing.TRACER.start_as_current_span(f"request {job}") as span:
            return span, await batcher.submit(job)

    try:
        first = asyncio.create_task(request("first"))
        while batcher._live_running() == 0:
            await asyncio.sleep(0.005)
        others = [asyncio.create_task(request(job)) for job in ("second", "third")]
        while batcher.depth < 2:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # the two wait in the queue
        release.set()
        results = await asyncio.gather(first, *others)
    finally:
        await batcher.close()
    assert [result for _, result in results] == ["done first", "done second", "done third"]
    spans = exporter.get_finished_spans()
    batch_spans = by_name(spans, "batch model-x")
    assert len(batch_spans) == 3
    parents = {
        job: span.get_span_context()
        for (span, _), job in zip(results, ("first", "second", "third"), strict=True)
    }
    of = {}
    for span in batch_spans:
        job = next(j for j, p in parents.items() if p.span_id == span.parent.span_id)
        assert span.context.trace_id == parents[job].trace_id
        of[job] = span
    assert of["first"].attributes["batch.size"] == 1
    assert not of["first"].links
    shared = [of["second"], of["third"]]
    assert {s.attributes["batch.id"] for s in shared} == {of["second"].attributes["batch.id"]}
    assert of["second"].attributes["batch.id"] != of["first"].attributes["batch.id"]
    for span, other in ((of["second"], "third"), (of["third"], "second")):
        assert span.attributes["batch.size"] == 2
        assert span.attributes["speechmesh.model"] == "model-x"
        # Queued while the first batch ran: at least the 50 ms above.
        assert span.attributes["queue.wait_ms"] >= 40
        assert span.attributes["batch.queue_wait_max_ms"] == max(
            s.attributes["queue.wait_ms"] for s in shared
        )
        assert [link.context.span_id for link in span.links] == [parents[other].span_id]
        assert [e.name for e in span.events] == ["batch.start"]
    # The worker threads ran in each batch's first span (its lead).
    assert seen_in_worker[0] == of["first"].context.span_id
    assert seen_in_worker[1] in {of["second"].context.span_id, of["third"].context.span_id}


async def test_batchers_off_tracing_or_untraced_carry_nothing(exporter):
    batcher = MicroBatcher("vad-like", lambda jobs: jobs, traced=False)
    try:
        with tracing.TRACER.start_as_current_span("request"):
            assert await batcher.submit(1) == 1
    finally:
        await batcher.close()
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]


def test_an_idle_tracer_costs_a_branch():
    """Tracing off: a job's entry carries no context (what the hot path keeps)."""
    assert tracing.TRACER is None

    async def main():
        seen = []
        batcher = MicroBatcher("plain", lambda jobs: jobs)
        original = batcher._take

        def take(**kwargs):
            batch = original(**kwargs)
            seen.extend(entry.trace for entry in batch)
            return batch

        batcher._take = take
        try:
            await batcher.submit(np.zeros(1))
        finally:
            await batcher.close()
        return seen

    assert asyncio.run(main()) == [None]
