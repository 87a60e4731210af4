"""A service's WebSocket port: realtime sessions beside the gRPC port, in the same process.

Browsers and voice agents speak WebSocket, not gRPC streams, so a service that has realtime
sessions (ASR's transcription, TTS's speech) also listens on `websocket_port`. The sessions run
on the service's own event loop and call its domain code directly (the ASR socket drives the same
StreamingSession as StreamingRecognize), so a socket costs what a gRPC stream costs. The gateway
(Envoy) upgrades `/v1/realtime...` connections and routes them here with the same edge as every
route: auth, the identity header, rate limits, TLS.

A handshake is refused with an HTTP status before any session starts: 404 for a path that is not
a route, 503 until the models are loaded, 401 when the gateway authenticates callers and the
request carries no identity (it did not come through the gateway). A message over
`max_message_bytes` closes the connection with 1009 (message too big); a session that cannot go on
closes it with 1008 (policy) or 1011 (server error) and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from speechmesh.runtime import metrics
from speechmesh.runtime.errors import ApiError
from speechmesh.runtime.identity import IdentityPolicy

log = structlog.get_logger("speechmesh.websocket")


@dataclass(frozen=True)
class Session:
    """Who opened a socket, and with which query parameters."""

    caller: str
    query: Mapping[str, str]
    path: str


#: A route's handler: runs one connection until it ends.
Handler = Callable[[ServerConnection, Session], Awaitable[None]]


class WebSocketServer:
    def __init__(
        self,
        service: str,
        routes: Mapping[str, Handler],
        identity: IdentityPolicy,
        *,
        max_message_bytes: int,
        ready: asyncio.Event,
    ):
        self.service = service
        self.routes = dict(routes)
        self.identity = identity
        self.max_message_bytes = max_message_bytes
        self.ready = ready
        self.port = 0
        self._server: Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await serve(
            self._run,
            host,
            port,
            process_request=self._handshake,
            max_size=self.max_message_bytes,
            compression=None,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else port
        log.info("websocket.started", service=self.service, port=self.port)
        return self.port

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path not in self.routes:
            paths = ", ".join(sorted(self.routes))
            return connection.respond(
                http.HTTPStatus.NOT_FOUND, f"no WebSocket route {url.path}; routes: {paths}\n"
            )
        if not self.ready.is_set():
            return connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "the models are loading; retry shortly\n"
            )
        try:
            caller = self.identity.caller(request.headers.raw_items())
        except ApiError as error:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, error.message + "\n")
        # Kept on the connection: a handshake the library then refuses (not an upgrade: 426)
        # leaves nothing behind.
        connection.speechmesh_session = Session(caller, dict(parse_qsl(url.query)), url.path)
        return None

    async def _run(self, connection: ServerConnection) -> None:
        session: Session = connection.speechmesh_session
        handler = self.routes[session.path]
        streams = metrics.ACTIVE_STREAMS.labels(self.service, "websocket:" + session.path)
        streams.inc()
        try:
            await handler(connection, session)
        finally:
            streams.dec()

    async def stop(self, grace: float) -> None:
        """Stops accepting, then closes open sessions (1001, going away) after `grace`."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), grace)
        self._server.close(close_connections=True)
        await self._server.wait_closed()
