"""Tracing overhead: Recognize latency of the ASR service with tracing off and on, in one run.

    python -m bench.tracing [--calls 200] [--out bench/results]

Two ASR services (`speechmesh serve asr`, a tiny random Whisper built offline, CPU, the default
engine) side by side: `off` with no OTEL_* variable (nothing of OpenTelemetry loaded), `on` with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/gRPC receiver in this process, so its spans (the
RPC's and its batch's) are made, batched and really exported. One client (this process) sends
one Recognize at a time (1 s of audio, a traceparent on every call, so both parse the same
metadata) to each service in blocks of 20 calls, interleaved (off, on, on, off, ...), so that
other load on the machine falls on both alike; `--calls` per service after 20 warm-up calls
each. Reported: p50/p90/mean per service, the difference of the medians, and the spans the
receiver got. On a shared machine the end-to-end difference is within the noise, so the run also
times, in this process, what tracing adds to one call's code path (the SERVER span from a
traceparent, one batch job's capture and span, the log processor) against the same with tracing
off, over many iterations, with the OTLP exporter of a real configure() sending to the receiver.
Writes tracing.json and tracing.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import machine, revision
from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = 20
WARMUP = 20


class Receiver:
    """An OTLP/gRPC receiver that counts the spans exported to it."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.spans = 0
        self._lock = threading.Lock()
        receiver = self

        class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                count = sum(
                    len(scope.spans)
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                )
                with receiver._lock:
                    receiver.spans += count
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(model: pathlib.Path, env: dict[str, str], log: pathlib.Path) -> tuple:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "speechmesh.cli",
        "serve",
        "asr",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--websocket-port",
        "0",
        "--device",
        "cpu",
        "--log-format",
        "json",
    ]
    out = log.open("w")
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return process, port, out


def _wait_serving(port: int, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("the ASR service exited")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise TimeoutError("not SERVING")


def _summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "calls": len(values),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def code_path_us(iterations: int = 20000) -> dict:
    """Microseconds per call of what tracing adds in the service: the interceptor's SERVER span
    (traceparent parsed, attached, ended with its attributes), one batcher job (captured, its
    span made, run in, ended) and a log line's trace ids; `off`: the same branches with tracing
    off. Measured with tracing.configure() (BatchSpanProcessor, OTLP exporter) as a service has
    it."""
    import grpc as grpc_module

    from speechmesh.runtime import tracing

    metadata = [("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")]
    full_method = "/speechmesh.asr.v1.AsrService/Recognize"
    ok = grpc_module.StatusCode.OK

    def one() -> None:
        span = None
        if tracing.TRACER is not None:
            span = tracing.start_server_span(full_method, metadata)
        captured = tracing.capture() if tracing.TRACER is not None else None
        if tracing.TRACER is not None:
            spans = tracing.batch_spans("model", "model#1", [captured], 0)
            tracing.in_span(lambda jobs: jobs, spans)([1])
            tracing.end_batch_spans(spans, [1])
        tracing.add_trace_ids(None, "info", {"event": "rpc"})
        if span is not None:
            span.end(ok, "request-id")

    timings = {}
    for name in ("off", "on"):
        if name == "on":
            assert tracing.configure("asr")
        for _ in range(1000):
            one()
        started = time.perf_counter()
        for _ in range(iterations):
            one()
        timings[name] = round((time.perf_counter() - started) / iterations * 1e6, 2)
        tracing.shutdown()
    return timings


def run(calls: int, out: pathlib.Path) -> dict:
    from speechmesh.tiny.models import build_tiny
    from tests.sounds import voice_like, wav

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    model = build_tiny("whisper", work / "tiny-whisper")
    receiver = Receiver()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base.setdefault("SPEECHMESH_ASR_CACHE_DIR", str(work / "cache"))
    base["HF_HUB_OFFLINE"] = "1"
    traced = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}"}
    servers = {
        "off": _serve(model, base, work / "off.log"),
        "on": _serve(model, traced, work / "on.log"),
    }
    try:
        for process, port, _ in servers.values():
            _wait_serving(port, process)
        channels = {
            name: grpc.insecure_channel(f"127.0.0.1:{port}")
            for name, (_, port, _) in servers.items()
        }
        stubs = {name: asr_pb2_grpc.AsrServiceStub(ch) for name, ch in channels.items()}
        request = asr_pb2.RecognizeRequest(
            audio=wav(voice_like(1.0)), config=asr_pb2.RecognitionConfig(language_code="en")
        )

        def call(name: str) -> float:
            metadata = [("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")]
            started = time.perf_counter()
            stubs[name].Recognize(request, metadata=metadata, timeout=60)
            return time.perf_counter() - started

        for name in stubs:
            for _ in range(WARMUP):
                call(name)
        latencies: dict[str, list[float]] = {"off": [], "on": []}
        blocks: list[dict] = []
        order = ["off", "on"]
        while len(latencies["on"]) < calls:
            block = {}
            for name in order:
                taken = [call(name) for _ in range(min(BLOCK, calls - len(latencies[name])))]
                latencies[name] += taken
                block[name] = statistics.median(taken) * 1000
            blocks.append(block)
            order.reverse()
        time.sleep(6)  # the batch span processor's schedule (5 s): everything exported
        for channel in channels.values():
            channel.close()
        spans_from_service = receiver.spans
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver.port}"
        try:
            code_path = code_path_us()
        finally:
            del os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    finally:
        for process, _, log in servers.values():
            process.terminate()
            process.wait(30)
            log.close()
        receiver.server.stop(0)
    result = {
        "machine": machine(),
        "revision": revision(),
        "calls": calls,
        "block": BLOCK,
        "off": _summary(latencies["off"]),
        "on": _summary(latencies["on"]),
        "p50_difference_ms": round(
            (statistics.median(latencies["on"]) - statistics.median(latencies["off"])) * 1000, 3
        ),
        "block_p50_differences_ms": [round(b["on"] - b["off"], 3) for b in blocks],
        "spans_exported": spans_from_service,
        "code_path_us": code_path,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracing.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "tracing.md").write_text(report(result))
    return result


def report(result: dict) -> str:
    off, on = result["off"], result["on"]
    spread = result["block_p50_differences_ms"]
    cpu = result["machine"].get("cpu_model") or "?"
    cpus = result["machine"].get("cpu_count", "?")
    load = result["revision"]["load_average_at_start"]
    return f"""# Tracing overhead

`python -m bench.tracing` (bench/tracing.py): the ASR service on a tiny random Whisper (CPU,
default engine), one Recognize of 1 s of audio at a time, {result["calls"]} calls per service in
interleaved blocks of {result["block"]}, with a traceparent on every call. `off`: no OTEL_*
variable; `on`: OTEL_EXPORTER_OTLP_ENDPOINT set, spans exported over OTLP/gRPC to a receiver in
the client's process ({result["spans_exported"]} spans received).

| tracing | calls | p50 ms | p90 ms | mean ms |
|---|---|---|---|---|
| off | {off["calls"]} | {off["p50_ms"]} | {off["p90_ms"]} | {off["mean_ms"]} |
| on | {on["calls"]} | {on["p50_ms"]} | {on["p90_ms"]} | {on["mean_ms"]} |

p50 on minus off: **{result["p50_difference_ms"]} ms**; per block (on minus off, ms):
{", ".join(f"{d:+.2f}" for d in spread)}.

What tracing adds to one call's code path (a SERVER span from a traceparent, one batch job's
span, the log line's ids; BatchSpanProcessor and the OTLP exporter as configured in a service),
timed in one process over 20,000 iterations: **{result["code_path_us"]["on"]} µs** on,
{result["code_path_us"]["off"]} µs off (the `is None` branches alone).

Machine: {cpu}, {cpus} CPUs (shared with other work while it ran; load average at start
{load}).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    result = run(args.calls, args.out)
    print(json.dumps({k: result[k] for k in ("off", "on", "p50_difference_ms")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
