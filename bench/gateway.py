"""Gateway benchmark: what Envoy adds to a small unary call, and REST against gRPC.

    python -m bench.gateway [--quick] [--sections unary,payload] [--out bench/results]

Three processes: the ASR service (`python -m speechmesh.cli serve asr`, on a tiny random Whisper
built offline, CPU), one Envoy (the real binary, run as `speechmesh up` runs it, on a bootstrap
rendered from GatewaySettings with the ASR service as its asr upstream; access log and rate limit
off unless asked) and this process, the client, so that neither the service nor Envoy shares the
client's interpreter. The call is ListModels: a small unary call that does no model work, so the
figures are the transport's and the gateway's, not the model's.

Paths, each over the same client machinery (one asyncio event loop in this process):

- direct: gRPC ListModels to the service, one grpc.aio channel (its own connection) per caller;
- envoy:  the same call, the same channels' kind, to the gateway's port;
- rest:   `GET /v1/asr/models` to the gateway (Envoy transcodes it to ListModels), one
          keep-alive HTTP/1.1 connection per caller (a minimal asyncio client).

Each caller sends its next call as soon as the last one answered (closed loop), at 1 and 16
concurrent callers. Paths run in blocks of equal duration, interleaved (direct, envoy, rest, then
rest, envoy, direct, ...), so that other load on the machine falls on all alike; garbage collection
is off within a block. Reported per path: p50/p90/p99 latency, calls per second, and CPU per call
of the client, the service and Envoy (from /proc). Compared: Envoy gRPC minus direct gRPC, REST
minus gRPC through Envoy, at the median (also per round, to show the spread) and as ratios.

The payload section sends ListModels with a ~100 KB unknown field appended (the service parses and
ignores it: still no model work), direct and through Envoy, one caller. Only gRPC: the REST route
of ListModels is a GET; REST uploads (recognizeFile) always do model work.

Writes NAME.json and, by bench.gateway_report (the target and the tables), NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np

from bench import gateway_report
from bench.common import bench_parser, machine, revision, run_and_write
from bench.gateway_stack import REST_PATH, ProcessCpu, Route, Stack, payload_request

CONCURRENCY = (1, 16)
PAYLOAD_BYTES = 100 * 1024


class Plan:
    def __init__(self, quick: bool):
        self.quick = quick
        #: Rounds (one block per path each) and seconds per block, per concurrency.
        self.rounds = 6 if quick else 12
        self.block_s = 0.6 if quick else 1.0
        self.payload_rounds = 6 if quick else 10
        self.payload_block_s = 0.4 if quick else 0.8
        #: Calls per caller on each path before measuring.
        self.warmup_calls = 50 if quick else 200


def _log(message: str) -> None:
    print(f"[bench.gateway] {message}", file=sys.stderr, flush=True)


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Block:
    """One measured stretch of calls on one path."""

    latencies: list[float]  # seconds
    wall: float
    cpu: dict[str, float | None]


@dataclass
class Bench:
    stack: Stack
    plan: Plan

    async def block(self, path: Route, seconds: float) -> Block:
        latencies: list[float] = []
        clock = time.perf_counter

        async def caller(call: Callable[[], Awaitable]) -> None:
            while clock() < deadline:
                sent = clock()
                await call()
                latencies.append(clock() - sent)

        gc.collect()
        gc.disable()
        try:
            cpu = ProcessCpu(self.stack.pids())
            start = clock()
            deadline = start + seconds
            await asyncio.gather(*(caller(call) for call in path.calls))
            wall = clock() - start
            used = cpu.stop()
        finally:
            gc.enable()
        return Block(latencies, wall, used)

    async def compare(
        self, paths: list[Route], callers: int, rounds: int, seconds: float
    ) -> dict[str, list[Block]]:
        """Every path on blocks of `seconds`, interleaved (A B C, C B A, ...)."""
        for path in paths:
            await path.open(callers)
        try:
            for path in paths:  # connections up, caches warm
                await asyncio.gather(
                    *(_repeat(call, self.plan.warmup_calls) for call in path.calls)
                )
            out: dict[str, list[Block]] = {path.name: [] for path in paths}
            for i in range(rounds):
                for path in paths if i % 2 == 0 else reversed(paths):
                    out[path.name].append(await self.block(path, seconds))
            return out
        finally:
            for path in paths:
                await path.close()


async def _repeat(call: Callable[[], Awaitable], times: int) -> None:
    for _ in range(times):
        await call()


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99, mean, min and max of latencies in seconds, as milliseconds."""
    if not values:
        return dict.fromkeys(("p50", "p90", "p99", "mean", "min", "max"))
    a = np.asarray(values) * 1e3
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def figures(blocks: list[Block]) -> dict:
    latencies = [x for b in blocks for x in b.latencies]
    wall = sum(b.wall for b in blocks)
    calls = len(latencies)
    cpu: dict[str, float | None] = {}
    for name in blocks[0].cpu:
        values = [b.cpu[name] for b in blocks]
        total = None if any(v is None for v in values) else sum(values)
        if name == "other":
            cpu["other_processes_cores"] = None if total is None else total / wall
        else:
            cpu[f"{name}_cpu_us_per_call"] = None if total is None else total / calls * 1e6
    return {
        "calls": calls,
        "wall_s": wall,
        "calls_per_s": calls / wall,
        "latency_ms": _percentiles(latencies),
        "p50_ms_per_block": [_percentiles(b.latencies)["p50"] for b in blocks],
        **cpu,
    }


def _difference(a: dict, b: dict, measured: dict[str, list[Block]], na: str, nb: str) -> dict:
    """What path a adds to path b: at p50/p90/p99, as ratios, and per round at the median."""
    per_round = [
        float(np.median(x.latencies) - np.median(y.latencies)) * 1e3
        for x, y in zip(measured[na], measured[nb], strict=True)
    ]
    la, lb = a["latency_ms"], b["latency_ms"]
    return {
        "added_p50_ms": la["p50"] - lb["p50"],
        "added_p90_ms": la["p90"] - lb["p90"],
        "added_p99_ms": la["p99"] - lb["p99"],
        "p50_ratio": la["p50"] / lb["p50"],
        "throughput_ratio": a["calls_per_s"] / b["calls_per_s"],
        # CPU per call that path a costs more than path b, process by process.
        **{
            f"{name}_cpu_us_per_call_added": _minus(
                a[f"{name}_cpu_us_per_call"], b[f"{name}_cpu_us_per_call"]
            )
            for name in ("client", "service", "envoy")
        },
        "added_p50_ms_per_round": {
            "median": float(np.median(per_round)),
            "min": min(per_round),
            "max": max(per_round),
        },
    }


# -- the run ----------------------------------------------------------------------------------


def environment(stack: Stack) -> dict:
    return {
        **machine(),
        "grpcio": grpc.__version__,
        **stack.envoy_info(),
        "access_log": stack.settings.access_log,
        "rate_limit": stack.settings.rate_limit_requests > 0,
        "processes": "client (this process, asyncio), ASR service (`speechmesh serve asr`,"
        " tiny random Whisper on CPU unless --model), Envoy: three processes",
        "call": "ListModels (no model work)",
        **revision(),
    }


async def _check_paths(stack: Stack, paths: list[Route]) -> None:
    """One call on each path, and that they agree."""
    from speechmesh.asr.v1 import asr_pb2

    names = []
    for path in paths:
        await path.open(1)
        try:
            reply = await path.calls[0]()
        finally:
            await path.close()
        if isinstance(reply, bytes):
            names.append([m["name"] for m in json.loads(reply)["models"]])
        else:
            assert isinstance(reply, asr_pb2.ListModelsResponse)
            names.append([m.name for m in reply.models])
    if any(n != names[0] or not n for n in names):
        raise SystemExit(f"bench: the paths disagree on ListModels: {names}")


async def run(args: argparse.Namespace) -> dict:
    plan = Plan(args.quick)
    sections = set(args.sections.split(","))
    stack = Stack(args)
    began = time.perf_counter()
    results: dict = {"benchmark": "gateway", "quick": plan.quick}
    try:
        await stack.start()
        _log(f"ASR service and Envoy ready in {stack.startup_s:.1f} s")
        env = environment(stack)
        env["startup_s"] = stack.startup_s
        results["environment"] = env
        bench = Bench(stack, plan)
        small = b""  # an empty ListModelsRequest
        paths = [
            Route("direct", "grpc", stack.service_port, small),
            Route("envoy", "grpc", stack.settings.port, small),
            Route("rest", "http", stack.settings.port, small),
        ]
        await _check_paths(stack, paths)
        if "unary" in sections:
            runs = []
            for callers in CONCURRENCY:
                measured = await bench.compare(paths, callers, plan.rounds, plan.block_s)
                per_path = {name: figures(blocks) for name, blocks in measured.items()}
                run_ = {
                    "concurrency": callers,
                    **per_path,
                    "envoy_vs_direct": _difference(
                        per_path["envoy"], per_path["direct"], measured, "envoy", "direct"
                    ),
                    "rest_vs_envoy_grpc": _difference(
                        per_path["rest"], per_path["envoy"], measured, "rest", "envoy"
                    ),
                }
                runs.append(run_)
                p50 = {name: f["latency_ms"]["p50"] for name, f in per_path.items()}
                _log(
                    f"{callers} caller(s): p50 direct {p50['direct']:.3f},"
                    f" envoy {p50['envoy']:.3f}, rest {p50['rest']:.3f} ms; Envoy adds"
                    f" {run_['envoy_vs_direct']['added_p50_ms']:.3f} ms, REST adds"
                    f" {run_['rest_vs_envoy_grpc']['added_p50_ms']:.3f} ms"
                )
            results["unary"] = {
                "block_s": plan.block_s,
                "rounds": plan.rounds,
                "request": "ListModelsRequest{} (0 bytes); REST: GET " + REST_PATH,
                "runs": runs,
            }
        if "payload" in sections:
            body = payload_request(PAYLOAD_BYTES)
            big = [
                Route("direct", "grpc", stack.service_port, body),
                Route("envoy", "grpc", stack.settings.port, body),
            ]
            measured = await bench.compare(big, 1, plan.payload_rounds, plan.payload_block_s)
            per_path = {name: figures(blocks) for name, blocks in measured.items()}
            diff = _difference(per_path["envoy"], per_path["direct"], measured, "envoy", "direct")
            results["payload"] = {
                "request_bytes": len(body),
                "concurrency": 1,
                "request": f"ListModelsRequest with a {PAYLOAD_BYTES} B unknown field (ignored)",
                **per_path,
                "envoy_vs_direct": diff,
            }
            _log(
                f"{len(body)} B request: p50 direct {per_path['direct']['latency_ms']['p50']:.3f},"
                f" envoy {per_path['envoy']['latency_ms']['p50']:.3f} ms;"
                f" Envoy adds {diff['added_p50_ms']:.3f} ms"
            )
    finally:
        results.setdefault("environment", {})["load_average_at_end"] = list(os.getloadavg())
        results["duration_s"] = time.perf_counter() - began
        stack.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("gateway", __doc__, "unary,payload", service=False)
    parser.add_argument("--model", help="Whisper folder or hub id (default: tiny random)")
    parser.add_argument(
        "--access-log", action="store_true", help="keep Envoy's access log on (default: off)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.sections.split(",")) - {"unary", "payload"}
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: unary, payload")
    return run_and_write(args, run, gateway_report, _log)


if __name__ == "__main__":
    sys.exit(main())
