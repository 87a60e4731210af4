"""Prometheus metrics every service exports on its /metrics port.

Metrics are module-level (one set per process) and labelled by service, so
several services in one process (tests, `speechmesh up`) share one registry.
"""

from __future__ import annotations

import prometheus_client as prom
import torch
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = prom.Counter(
    "speechmesh_requests_total",
    "RPCs finished, by method and status code.",
    ["service", "method", "code"],
)
LATENCY = prom.Histogram(
    "speechmesh_request_duration_seconds",
    "RPC duration, by method and status code.",
    ["service", "method", "code"],
    buckets=_LATENCY_BUCKETS,
)
AUDIO_SECONDS = prom.Counter(
    "speechmesh_audio_seconds_total", "Seconds of audio processed.", ["service", "method"]
)
JOBS_FINISHED = prom.Counter(
    "speechmesh_jobs_finished_total",
    "Long-running jobs this replica finished, by method and final state.",
    ["service", "method", "state"],
)
JOB_SECONDS = prom.Histogram(
    "speechmesh_job_duration_seconds",
    "Time a replica spent running a job, by method (claim to result).",
    ["service", "method"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600),
)
CASCADE_STAGE = prom.Histogram(
    "speechmesh_cascade_stage_seconds",
    "Translate service, cascade path: time of each stage of one call or stream segment"
    " (recognize, translate, synthesize; a stage's calls run at once).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
ACTIVE_STREAMS = prom.Gauge("speechmesh_active_streams", "Streams open now.", ["service", "method"])
REAL_TIME_FACTOR = prom.Histogram(
    "speechmesh_real_time_factor",
    "Processing time divided by audio duration, per request.",
    ["service", "method"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
TIME_TO_FIRST_RESULT = prom.Histogram(
    "speechmesh_time_to_first_result_seconds",
    "Streams: time from the start of an utterance to its first result (interim or final).",
    ["service", "method"],
    buckets=_LATENCY_BUCKETS,
)
QUEUE_DEPTH = prom.Gauge("speechmesh_queue_depth", "Decode jobs waiting for the model.", ["model"])
BATCH_SIZE = prom.Histogram(
    "speechmesh_batch_size",
    "Jobs per forward pass.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
BATCH_SECONDS = prom.Histogram(
    "speechmesh_batch_duration_seconds",
    "Time of one batched forward pass.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
REJECTED = prom.Counter(
    "speechmesh_rejected_total", "Jobs refused because the queue was full.", ["model"]
)


class _DeviceMemoryCollector(Collector):
    """Reads accelerator memory at scrape time (nothing to report on CPU)."""

    def collect(self):
        allocated = GaugeMetricFamily(
            "speechmesh_device_memory_allocated_bytes",
            "Accelerator memory held by tensors.",
            labels=["device"],
        )
        reserved = GaugeMetricFamily(
            "speechmesh_device_memory_reserved_bytes",
            "Accelerator memory reserved by torch.",
            labels=["device"],
        )
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                device = f"cuda:{index}"
                allocated.add_metric([device], torch.cuda.memory_allocated(index))
                reserved.add_metric([device], torch.cuda.memory_reserved(index))
        yield allocated
        yield reserved


prom.REGISTRY.register(_DeviceMemoryCollector())


def start_metrics_server(host: str, port: int) -> tuple[object, int]:
    """Serves /metrics; returns the server and the port it bound (port 0 picks one)."""
    server, _thread = prom.start_http_server(port, addr=host)
    return server, server.server_port


ENDPOINT_TO_FINAL = prom.Histogram(
    "speechmesh_endpoint_to_final_seconds",
    "Streams: time from the detected end of an utterance to its final result.",
    ["service"],
    buckets=_LATENCY_BUCKETS,
)
