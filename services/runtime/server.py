"""The grpc.aio server every service runs on.

Start-up: bind and start at once with health NOT_SERVING, so probes and
reflection answer while models load; load and warm up the models; switch
health to SERVING. Shutdown (SIGTERM or SIGINT): health NOT_SERVING, stop
accepting calls, let in-flight calls and streams finish within the grace
period, release the models, exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from speechmesh.runtime.identity import IdentityPolicy
from speechmesh.runtime.interceptor import ObservabilityInterceptor
from speechmesh.runtime.metrics import start_metrics_server
from speechmesh.runtime.settings import ServiceSettings
from speechmesh.runtime.websocket import Handler, WebSocketServer

if TYPE_CHECKING:
    from speechmesh.operations.host import Jobs

log = structlog.get_logger("speechmesh.server")


@dataclass
class ServiceApp:
    """What a service plugs into the host."""

    #: Short name for logs and metrics ("asr").
    name: str
    #: Full proto service names, for health and reflection.
    service_names: list[str]
    #: Adds the servicers to a server.
    register: Callable[[grpc.aio.Server], None]
    #: Loads and warms up the models; health turns SERVING when it returns.
    load: Callable[[], Awaitable[None]]
    #: Releases the models after the server stopped.
    close: Callable[[], Awaitable[None]]
    #: WebSocket routes (path -> handler) served on the `websocket_port` setting; none: no port.
    websocket_routes: Mapping[str, Handler] = field(default_factory=dict)


def model_service_app(
    name: str,
    servicer_module,
    servicer,
    models,
    *others,
    jobs: Jobs | None = None,
    websocket_routes: Mapping[str, Handler] | None = None,
) -> ServiceApp:
    """The app of a model-serving service: `servicer`, added by its module's `register`
    under its `service_name()`; `models` loaded at start-up, closed at the end, then `others`
    (anything else with an async close, e.g. its peers). With `jobs`, the service also serves
    its package's OperationsService (speechmesh.<name>.v1) and runs jobs once the models are
    loaded; jobs stop before the models are released. `websocket_routes`: its realtime sockets
    (speechmesh.runtime.websocket)."""
    names = [servicer_module.service_name()]
    registers = [lambda server: servicer_module.register(servicer, server)]
    if jobs is not None:
        from speechmesh.operations import servicer as operations

        names.append(operations.service_name(name))
        registers.append(lambda server: operations.register(name, jobs, server))

    async def load() -> None:
        await models.load()
        if jobs is not None:
            await jobs.start()

    async def close() -> None:
        if jobs is not None:
            await jobs.close()
        await models.close()
        for other in others:
            await other.close()

    def register(server: grpc.aio.Server) -> None:
        for add in registers:
            add(server)

    return ServiceApp(
        name=name,
        service_names=names,
        register=register,
        load=load,
        close=close,
        websocket_routes=websocket_routes or {},
    )


class ServiceHost:
    def __init__(self, app: ServiceApp, settings: ServiceSettings):
        self.app = app
        self.settings = settings
        self.port = 0
        self.metrics_port = 0
        #: The WebSocket port, when the app has routes (0 until started).
        self.websocket_port = 0
        self._websocket: WebSocketServer | None = None
        self.ready = asyncio.Event()
        #: Set once the models are loaded and health is SERVING.
        self.serving = asyncio.Event()
        self.failed: BaseException | None = None
        self._server: grpc.aio.Server | None = None
        self._metrics_server = None
        self._health = health.aio.HealthServicer()
        self._load_task: asyncio.Task | None = None

    async def start(self) -> None:
        s = self.settings
        options = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.keepalive_time_ms", int(s.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout_s * 1000)),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(
            interceptors=[ObservabilityInterceptor(self.app.name)], options=options
        )
        self.app.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [
            *self.app.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        ]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        self.port = server.add_insecure_port(f"{s.host}:{s.port}")
        if self.port == 0:
            raise OSError(f"could not listen on {s.host}:{s.port}: is the port in use?")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        self._server = server
        if s.metrics:
            self._metrics_server, self.metrics_port = start_metrics_server(s.host, s.metrics_port)
        if self.app.websocket_routes:
            self._websocket = WebSocketServer(
                self.app.name,
                self.app.websocket_routes,
                IdentityPolicy.from_settings(s),
                max_message_bytes=s.max_websocket_message_bytes,
                ready=self.serving,
            )
            self.websocket_port = await self._websocket.start(s.host, s.websocket_port)
        log.info(
            "server.started", service=self.app.name, port=self.port, metrics_port=self.metrics_port
        )
        self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            await self.app.load()
        except Exception as error:
            self.failed = error
            log.error("server.load_failed", service=self.app.name, error=str(error))
            self.ready.set()
            return
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.serving.set()
        log.info(
            "server.serving",
            service=self.app.name,
            load_seconds=round(time.perf_counter() - started, 2),
        )
        self.ready.set()

    async def _set_health(self, status: int) -> None:
        for name in ("", *self.app.service_names):
            await self._health.set(name, status)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, refuse new calls, let in-flight ones finish."""
        grace = self.settings.grace_period_s if grace is None else grace
        await self._health.enter_graceful_shutdown()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        self.serving.clear()
        if self._server is not None:
            log.info("server.stopping", service=self.app.name, grace_s=grace)
            if self._websocket is not None:
                await asyncio.gather(self._server.stop(grace), self._websocket.stop(grace))
            else:
                await self._server.stop(grace)
        await self.app.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("server.stopped", service=self.app.name)

    async def run_until_signal(self) -> int:
        """Runs until SIGTERM or SIGINT; returns the process exit code."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        failed = asyncio.create_task(self._wait_failed())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({failed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        failed.cancel()
        stopping.cancel()
        await self.stop()
        return 1 if self.failed is not None else 0

    async def _wait_failed(self) -> None:
        await self.ready.wait()
        if self.failed is None:
            await asyncio.Event().wait()
