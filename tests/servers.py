"""Small servers and ports for tests: a free loopback port, a gRPC server that answers ASR's
ListModels with a function of the test's own (the fake upstreams and scripted services), and
the open streams of the services running in-process."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from speechmesh.asr.v1 import asr_pb2

#: ASR's gRPC service name.
ASR_SERVICE = "speechmesh.asr.v1.AsrService"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def list_models_server(
    list_models: Callable,
    max_workers: int = 2,
    healthy: bool = False,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """A started gRPC server on a free loopback port whose ASR ListModels is
    `list_models(request, context)`, with a health service reporting ASR SERVING when `healthy`,
    over TLS with `credentials` (else plaintext); returns (server, port). The caller stops it."""
    handler = grpc.method_handlers_generic_handler(
        ASR_SERVICE,
        {
            "ListModels": grpc.unary_unary_rpc_method_handler(
                list_models,
                request_deserializer=asr_pb2.ListModelsRequest.FromString,
                response_serializer=asr_pb2.ListModelsResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    server.add_generic_rpc_handlers([handler])
    if healthy:
        checker = health.HealthServicer()
        checker.set(ASR_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


def active_streams(service: str, method: str) -> float:
    """speechmesh_active_streams of the servers in this process for one streaming method."""
    labels = {"service": service, "method": method}
    return REGISTRY.get_sample_value("speechmesh_active_streams", labels) or 0.0


async def until_active_streams(
    service: str, method: str, expected: float, within_s: float = 5.0
) -> None:
    """Polls active_streams until it is `expected`; fails the test if not within `within_s`."""
    deadline = time.monotonic() + within_s
    while active_streams(service, method) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert active_streams(service, method) == expected


CLI = pathlib.Path(sys.executable).parent / "speechmesh"
ROOT = pathlib.Path(__file__).resolve().parent.parent


class AsrProcess:
    """`speechmesh serve asr` as a child process on a free port, its output in files, with
    `env` added to the environment (and `args` to the command line)."""

    def __init__(
        self,
        tmp: pathlib.Path,
        model: str,
        name: str,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ):
        self.port = free_port()
        self.stdout = tmp / f"{name}.out"
        self.stderr = tmp / f"{name}.err"
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "SPEECHMESH_ASR_WEBSOCKET_PORT": "0",  # replicas side by side: a free port each
            **(env or {}),
        }
        command = [
            str(CLI),
            "serve",
            "asr",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            "--device",
            "cpu",
            *args,
        ]
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env=env)
        self.address = f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def logs(self) -> list[dict]:
        """The JSON log lines, wherever the server writes them."""
        lines = self.output().splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"')]

    async def wait_serving(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"server exited early:\n{self.output()[-3000:]}")
                try:
                    health = health_pb2_grpc.HealthStub(channel)
                    reply = await health.Check(
                        health_pb2.HealthCheckRequest(service=ASR_SERVICE), timeout=5
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"not SERVING after {timeout} s:\n{self.output()[-3000:]}")

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running {timeout} s later:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
