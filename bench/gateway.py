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

Writes NAME.json and NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import pathlib
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np

from bench.common import _cpu_model, _git, bench_parser, fmt, run_and_write, table

CONCURRENCY = (1, 16)
#: Envoy may add less than this at the median to a small unary call (gRPC, 1 caller).
ENVOY_ADDED_P50_TARGET_MS = 1.0
PAYLOAD_BYTES = 100 * 1024
ASR_SERVICE = "speechmesh.asr.v1.AsrService"
LIST_MODELS = f"/{ASR_SERVICE}/ListModels"
REST_PATH = "/v1/asr/models"
PATHS = ("direct", "envoy", "rest")
STARTUP_TIMEOUT_S = 180.0


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- CPU of the processes involved --------------------------------------------------------------


class ProcessCpu:
    """CPU seconds of named processes, and of the whole machine, between start and stop."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self._tick = os.sysconf("SC_CLK_TCK")
        self._start = self._read()

    def _read(self) -> dict[str, float] | None:
        try:
            fields = pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            out = {"machine": (user + nice + system + irq + softirq + steal) / self._tick}
            for name, pid in self.pids.items():
                stat = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(stat[11]) + int(stat[12])) / self._tick
            return out
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> dict[str, float | None]:
        end = self._read()
        if end is None or self._start is None:
            return {name: None for name in [*self.pids, "other"]}
        used = {name: end[name] - self._start[name] for name in self.pids}
        used["other"] = max(end["machine"] - self._start["machine"] - sum(used.values()), 0.0)
        return used


# -- clients ----------------------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: GET requests, one at a time (no pipelining)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def get(self, path: str) -> bytes:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readuntil(b"\r\n")  # no trailers expected: the closing CRLF
            body = b"".join(parts)
        else:
            raise RuntimeError(f"GET {path}: a response without a length: {status_line}")
        if not status_line.startswith("HTTP/1.1 200"):
            raise RuntimeError(f"GET {path}: {status_line}: {body[:300]!r}")
        if headers.get("connection", "").lower() == "close":
            await self.close()
            await self.open()
        return body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


def _payload_request(size: int) -> bytes:
    """A ListModelsRequest with an unknown bytes field (number 15) of `size` random bytes."""
    from speechmesh.asr.v1 import asr_pb2

    head = asr_pb2.ListModelsRequest(request_id="bench").SerializeToString()
    length, varint = size, bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return head + bytes([15 << 3 | 2]) + bytes(varint) + os.urandom(size)


class Route:
    """One way of making the call, with one client (channel or connection) per caller."""

    def __init__(self, name: str, kind: str, port: int, request: bytes):
        self.name, self.kind, self.port, self.request = name, kind, port, request
        self.calls: list[Callable[[], Awaitable]] = []
        self._closers: list[Callable[[], Awaitable]] = []

    async def open(self, callers: int) -> None:
        from speechmesh.asr.v1 import asr_pb2

        for _ in range(callers):
            if self.kind == "grpc":
                channel = grpc.aio.insecure_channel(
                    f"127.0.0.1:{self.port}",
                    # Its own connection: channels with equal arguments share one otherwise.
                    options=[("grpc.use_local_subchannel_pool", 1)],
                )
                method = channel.unary_unary(
                    LIST_MODELS,
                    request_serializer=bytes,
                    response_deserializer=asr_pb2.ListModelsResponse.FromString,
                )
                request = self.request
                self.calls.append(lambda method=method, request=request: method(request))
                self._closers.append(channel.close)
            else:
                connection = HttpConnection("127.0.0.1", self.port)
                await connection.open()
                self.calls.append(lambda connection=connection: connection.get(REST_PATH))
                self._closers.append(connection.close)

    async def close(self) -> None:
        for close in self._closers:
            await close()
        self.calls, self._closers = [], []


# -- the processes ----------------------------------------------------------------------------


class Stack:
    """The ASR service and Envoy as child processes; this process is the client."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = tempfile.TemporaryDirectory(prefix="speechmesh-bench-gateway-")
        self.folder = pathlib.Path(self.workdir.name)
        self.service: subprocess.Popen | None = None
        self.envoy: subprocess.Popen | None = None
        self.logs: list = []

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w")
        self.logs.append(log)
        return subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.folder / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def start(self) -> None:
        from speechmesh.gateway.config import GatewaySettings
        from speechmesh.gateway.envoy_process import envoy_command, write_config

        model = self.args.model or str(_tiny_whisper())
        self.service_port = _free_port()
        env = dict(os.environ)
        env.update(
            {
                "SPEECHMESH_ASR_HOST": "127.0.0.1",
                "SPEECHMESH_ASR_PORT": str(self.service_port),
                "SPEECHMESH_ASR_MODEL": model,
                "SPEECHMESH_ASR_DEVICE": "cpu",
                "SPEECHMESH_ASR_METRICS": "false",
                "SPEECHMESH_ASR_LOG_LEVEL": "warning",
                "SPEECHMESH_ASR_LOG_FORMAT": "json",
                "SPEECHMESH_ASR_GRACE_PERIOD_S": "1",
            }
        )
        started = time.perf_counter()
        self.service = self._spawn(
            "asr", [sys.executable, "-m", "speechmesh.cli", "serve", "asr"], env
        )
        self.settings = GatewaySettings(
            host="127.0.0.1",
            port=_free_port(),
            admin_port=_free_port(),
            asr_upstream=f"127.0.0.1:{self.service_port}",
            # Nothing listens there: the benchmark fronts ASR only.
            translate_upstream=f"127.0.0.1:{_free_port()}",
            tts_upstream=f"127.0.0.1:{_free_port()}",
            access_log=self.args.access_log,
            rate_limit_requests=0,
        )
        config = write_config(self.settings, self.folder / "envoy.yaml")
        self.envoy = self._spawn("envoy", envoy_command(self.settings, config), dict(os.environ))
        await self._wait_serving(started)
        await asyncio.to_thread(self._wait_envoy_healthy, started)
        self.startup_s = time.perf_counter() - started

    def _check_alive(self) -> None:
        for name, process in (("asr", self.service), ("envoy", self.envoy)):
            if process is not None and process.poll() is not None:
                raise SystemExit(
                    f"bench: {name} exited with code {process.returncode}:\n{self.tail(name)}"
                )

    async def _wait_serving(self, started: float) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.service_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(
                        health_pb2.HealthCheckRequest(service=ASR_SERVICE), timeout=2
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.perf_counter() - started > STARTUP_TIMEOUT_S:
                    raise SystemExit(f"bench: ASR not SERVING after {STARTUP_TIMEOUT_S:g} s")
                await asyncio.sleep(0.2)

    def admin(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.settings.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()

    def _wait_envoy_healthy(self, started: float) -> None:
        while True:
            self._check_alive()
            with contextlib.suppress(OSError):
                if re.search(
                    r"^asr::[^\n]*::health_flags::healthy$", self.admin("/clusters"), re.M
                ):
                    return
            if time.perf_counter() - started > STARTUP_TIMEOUT_S:
                raise SystemExit(f"bench: Envoy's asr cluster not healthy:\n{self.tail('envoy')}")
            time.sleep(0.2)

    def envoy_info(self) -> dict:
        try:
            info = json.loads(self.admin("/server_info"))
        except (OSError, ValueError):
            return {}
        return {
            "envoy_version": info.get("version"),
            "envoy_worker_threads": info.get("command_line_options", {}).get("concurrency"),
        }

    def pids(self) -> dict[str, int]:
        assert self.service is not None and self.envoy is not None
        return {"client": os.getpid(), "service": self.service.pid, "envoy": self.envoy.pid}

    def stop(self) -> None:
        for process in (self.envoy, self.service):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.envoy, self.service):
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()
        self.workdir.cleanup()


def _tiny_whisper() -> pathlib.Path:
    """A tiny random Whisper, built once (in a child process: this one stays free of torch)."""
    dest = pathlib.Path(tempfile.gettempdir()) / "speechmesh-bench" / "tiny-whisper"
    if not (dest / "config.json").is_file():
        _log(f"building a tiny random Whisper in {dest}")
        subprocess.run(
            [sys.executable, "-m", "speechmesh.cli", "models", "tiny", "whisper", str(dest)],
            check=True,
            capture_output=True,
        )
    return dest


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
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "grpcio": grpc.__version__,
        **stack.envoy_info(),
        "access_log": stack.settings.access_log,
        "rate_limit": stack.settings.rate_limit_requests > 0,
        "processes": "client (this process, asyncio), ASR service (`speechmesh serve asr`,"
        " tiny random Whisper on CPU unless --model), Envoy: three processes",
        "call": "ListModels (no model work)",
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_at_start": list(os.getloadavg()),
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
                p50 = {name: per_path[name]["latency_ms"]["p50"] for name in PATHS}
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
            body = _payload_request(PAYLOAD_BYTES)
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
    results["targets"] = targets(results)
    results["all_targets_pass"] = all(t["pass"] for t in results["targets"] if t["gating"])
    return results


def targets(results: dict) -> list[dict]:
    out = []
    for r in results.get("unary", {}).get("runs", []):
        c = r["concurrency"]
        added = r["envoy_vs_direct"]["added_p50_ms"]
        out.append(
            {
                "name": f"envoy_added_p50_ms_c{c}",
                "description": f"Envoy gRPC p50 minus direct gRPC p50, small unary call,"
                f" {c} concurrent caller{'s' if c > 1 else ''}",
                "measured": added,
                "threshold": ENVOY_ADDED_P50_TARGET_MS,
                "pass": added < ENVOY_ADDED_P50_TARGET_MS,
                # The target is the cost per call: one caller. With 16 callers the median also
                # holds the wait behind the others for CPU that Envoy shares with the service
                # and the client; reported against the same threshold, not gating.
                "gating": c == 1,
            }
        )
    return out


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# Gateway benchmark",
        "",
        f"Envoy {env.get('envoy_version', '?')} ({env.get('envoy_worker_threads')} worker"
        f" threads, access log {'on' if env.get('access_log') else 'off'}) in front of the ASR"
        f" service; {env.get('cpu_count')} CPUs ({env.get('cpu_model')}), grpcio"
        f" {env.get('grpcio')}; {env.get('date')}, commit {(env.get('git_commit') or '')[:10]}"
        f"{' (dirty)' if env.get('git_dirty') else ''}; {results['duration_s']:.0f} s"
        f"{' (quick)' if results['quick'] else ''}.",
        "",
        "Three processes: this client (asyncio; one gRPC channel or keep-alive HTTP/1.1"
        " connection per caller, closed loop), the ASR service, Envoy. The call is ListModels,"
        " which does no model work. Paths interleaved in blocks; CPU per call from /proc.",
        "",
    ]
    unary = results.get("unary")
    if unary:
        rows = []
        for r in unary["runs"]:
            for name in PATHS:
                f = r[name]
                lat = f["latency_ms"]
                rows.append(
                    [
                        r["concurrency"],
                        name,
                        f["calls"],
                        fmt(f["calls_per_s"], 0),
                        fmt(lat["p50"], 3),
                        fmt(lat["p90"], 3),
                        fmt(lat["p99"], 3),
                        fmt(f.get("client_cpu_us_per_call"), 0),
                        fmt(f.get("service_cpu_us_per_call"), 0),
                        fmt(f.get("envoy_cpu_us_per_call"), 0),
                        fmt(f.get("other_processes_cores")),
                    ]
                )
        lines += [
            "## Small unary calls, per path",
            "",
            "direct: gRPC to the service; envoy: gRPC through Envoy; rest: `GET /v1/asr/models`"
            " through Envoy. Latency in ms; CPU in µs per call.",
            "",
            table(
                [
                    "callers",
                    "path",
                    "calls",
                    "calls/s",
                    "p50",
                    "p90",
                    "p99",
                    "client CPU",
                    "service CPU",
                    "Envoy CPU",
                    "other cores",
                ],
                rows,
            ),
            "",
        ]
        rows = []
        for r in unary["runs"]:
            for label, key in (
                ("Envoy vs direct", "envoy_vs_direct"),
                ("REST vs gRPC", "rest_vs_envoy_grpc"),
            ):
                d = r[key]
                spread = d["added_p50_ms_per_round"]
                rows.append(
                    [
                        r["concurrency"],
                        label,
                        fmt(d["added_p50_ms"], 3),
                        f"{fmt(spread['min'], 3)} – {fmt(spread['max'], 3)}",
                        fmt(d["added_p90_ms"], 3),
                        fmt(d["added_p99_ms"], 3),
                        fmt(d["p50_ratio"], 2),
                        fmt(d["throughput_ratio"], 2),
                        fmt(d["envoy_cpu_us_per_call_added"], 0),
                        fmt(d["client_cpu_us_per_call_added"], 0),
                    ]
                )
        lines += [
            "## What each hop adds",
            "",
            "Envoy vs direct: gRPC through Envoy minus gRPC to the service. REST vs gRPC: REST"
            " through Envoy minus gRPC through Envoy. Added ms; the range is over rounds (each"
            " round's difference of block medians); CPU added in µs per call. The REST client"
            " is a minimal asyncio HTTP/1.1 client, lighter per call than grpcio's: REST vs"
            " gRPC latency includes that difference, the Envoy CPU column does not.",
            "",
            table(
                [
                    "callers",
                    "comparison",
                    "added p50",
                    "per round",
                    "added p90",
                    "added p99",
                    "p50 ratio",
                    "throughput ratio",
                    "Envoy CPU added",
                    "client CPU added",
                ],
                rows,
            ),
            "",
        ]
    payload = results.get("payload")
    if payload:
        d = payload["envoy_vs_direct"]
        rows = [
            [
                name,
                fmt(payload[name]["calls_per_s"], 0),
                fmt(payload[name]["latency_ms"]["p50"], 3),
                fmt(payload[name]["latency_ms"]["p90"], 3),
                fmt(payload[name]["latency_ms"]["p99"], 3),
                fmt(payload[name].get("envoy_cpu_us_per_call"), 0),
            ]
            for name in ("direct", "envoy")
        ]
        lines += [
            f"## A {payload['request_bytes'] // 1024} KB request (gRPC, 1 caller)",
            "",
            f"{payload['request']}. Envoy adds {fmt(d['added_p50_ms'], 3)} ms at p50"
            f" (ratio {fmt(d['p50_ratio'], 2)}).",
            "",
            table(["path", "calls/s", "p50 ms", "p90 ms", "p99 ms", "Envoy CPU µs/call"], rows),
            "",
        ]
    lines += ["## Targets", ""]
    lines += [
        f"- {t['description']}: {fmt(t['measured'], 3)} ms (< {t['threshold']} ms):"
        f" {fmt(bool(t['pass']))}{'' if t['gating'] else ' (reported, not gating)'}"
        for t in results["targets"]
    ]
    return "\n".join(lines) + "\n"


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
    return run_and_write(args, run, markdown, _log)


if __name__ == "__main__":
    sys.exit(main())
