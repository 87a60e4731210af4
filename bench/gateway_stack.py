"""The gateway benchmark's processes and clients.

`Stack` runs the ASR service (`python -m speechmesh.cli serve asr`) and one Envoy (the real
binary, as `speechmesh up` runs it) as child processes and waits until both serve; `Route` is
one way of making the call (gRPC to the service or to Envoy, or REST to Envoy), with one client
per caller; `ProcessCpu` reads the CPU time each process used from /proc. bench.gateway
measures with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable

import grpc

from bench.served import tiny_checkpoint

ASR_SERVICE = "speechmesh.asr.v1.AsrService"
LIST_MODELS = f"/{ASR_SERVICE}/ListModels"
REST_PATH = "/v1/asr/models"
STARTUP_TIMEOUT_S = 180.0


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


def payload_request(size: int) -> bytes:
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

        model = self.args.model or str(tiny_checkpoint("whisper"))
        self.service_port = _free_port()
        env = dict(os.environ)
        env.update(
            {
                "SPEECHMESH_ASR_HOST": "127.0.0.1",
                "SPEECHMESH_ASR_PORT": str(self.service_port),
                "SPEECHMESH_ASR_MODEL": model,
                "SPEECHMESH_ASR_DEVICE": "cpu",
                "SPEECHMESH_ASR_METRICS": "false",
                "SPEECHMESH_ASR_WEBSOCKET_PORT": "0",
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
