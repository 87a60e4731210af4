"""The demo page's HTTP server: static files and a pass-through to the gateway.

- `GET /` and `GET /static/NAME`: the page; `GET /ui/config`: the gateway's address.
- `/v1/...` (any method): sent on to the gateway as it came (body, content type and the
  credential headers), and the answer relayed as it arrives, so raw audio and server-sent events
  pass through. Errors stay the gateway's `google.rpc.Status` JSON; an unreachable gateway is
  answered in the same shape (502, code 14).
- A WebSocket upgrade of `/v1/...` (the live microphone's `/v1/realtime`): the handshake goes
  on to the gateway and the bytes are then piped both ways unchanged, so the page and the
  gateway speak the realtime protocol to each other. Browsers cannot set headers on a
  WebSocket, so the page puts its key in the `api_key` query parameter; it goes upstream as
  `Authorization: Bearer KEY` (the query parameter removed), the header every gateway
  authentication mode reads. The browser's `Origin` is not passed on, as on every other call:
  this server is the gateway's client, so the gateway needs no CORS or origin setting for it.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import importlib.resources
import json
import socket
import ssl
import sys
import threading
import urllib.parse
import webbrowser
from collections.abc import Callable

#: Request headers passed on to the gateway.
FORWARDED = ("content-type", "accept", "authorization", "x-api-key")
#: Response headers relayed back to the browser.
RELAYED = ("content-type", "content-length", "content-disposition", "retry-after")
#: Largest request body taken from the browser (the gateway's own default limit is 32 MiB).
MAX_BODY = 64 * 1024 * 1024
#: WebSocket handshake headers passed on to the gateway (the key and the extensions offered
#: must reach the end that answers them).
UPGRADE_FORWARDED = (
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "authorization",
    "x-api-key",
)
#: The query parameter a page's WebSocket carries its key in.
KEY_PARAMETER = "api_key"
CALL_TIMEOUT_S = 600.0

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def static_files() -> dict[str, bytes]:
    """The page's files by name, read once."""
    folder = importlib.resources.files("speechmesh.ui") / "static"
    return {
        item.name: item.read_bytes()
        for item in folder.iterdir()
        if item.is_file() and "." + item.name.rpartition(".")[2] in STATIC_TYPES
    }


class Upstream:
    """The gateway's REST address: `http[s]://host[:port][/prefix]`."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"--gateway takes http://HOST:PORT or https://HOST:PORT, got {url!r}")
        self.url = url
        self.tls = parsed.scheme == "https"
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.tls else 80)
        self.prefix = parsed.path.rstrip("/")

    def connection(self) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, timeout=CALL_TIMEOUT_S)
        return http.client.HTTPConnection(self.host, self.port, timeout=CALL_TIMEOUT_S)

    def socket(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=CALL_TIMEOUT_S)
        if self.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        return sock


def status_json(code: int, message: str) -> bytes:
    """A google.rpc.Status body, the shape of every gateway error."""
    return json.dumps({"code": code, "message": message, "details": []}).encode()


class UiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, upstream: Upstream):
        super().__init__(address, Handler)
        self.upstream = upstream
        self.files = static_files()


class Handler(http.server.BaseHTTPRequestHandler):
    server: UiServer
    server_version = "speechmesh-ui"

    def log_message(self, format, *args):
        pass

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: int, message: str) -> None:
        self._answer(status, status_json(code, message), "application/json")

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._error(413, 3, f"the request body must be at most {MAX_BODY} bytes")
            return None
        return self.rfile.read(length) if length else b""

    def _relay(self, reply: http.client.HTTPResponse) -> None:
        """Sends the gateway's answer on as it arrives (audio, JSON or server-sent events)."""
        self.send_response(reply.status)
        for name in RELAYED:
            value = reply.getheader(name)
            if value is not None:
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        while True:
            data = reply.read1(65536)
            if not data:
                break
            self.wfile.write(data)
            self.wfile.flush()

    # -- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path == "/ui/config":
            config = {"gateway": self.server.upstream.url}
            self._answer(200, json.dumps(config).encode(), "application/json")
        elif path.startswith("/v1/") and self.headers.get("upgrade", "").lower() == "websocket":
            self._pipe()
        else:
            self._pass()

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self._pass()

    def do_DELETE(self) -> None:
        self._pass()

    def _static(self, name: str) -> None:
        body = self.server.files.get(name)
        if body is None:
            self._error(404, 5, f"no file {name!r} in the demo page")
            return
        self._answer(200, body, STATIC_TYPES["." + name.rpartition(".")[2]])

    def _pass(self) -> None:
        """Anything under /v1/ goes to the gateway as it came."""
        if not self.path.startswith("/v1/"):
            self._error(404, 5, f"the demo page has no {self.path.split('?')[0]!r}")
            return
        body = self._body() if self.command in ("POST", "PUT", "PATCH") else None
        if self.command in ("POST", "PUT", "PATCH") and body is None:
            return
        upstream = self.server.upstream
        headers = {name: self.headers[name] for name in FORWARDED if self.headers.get(name)}
        connection = upstream.connection()
        try:
            connection.request(self.command, upstream.prefix + self.path, body, headers)
            reply = connection.getresponse()
        except OSError as error:
            connection.close()
            self._unreachable(error)
            return
        self._relay_then(reply, connection.close)

    def _unreachable(self, error: OSError) -> None:
        url = self.server.upstream.url
        self._error(502, 14, f"the demo page cannot reach the gateway at {url}: {error}")

    def _relay_then(self, reply, finish: Callable[[], object]) -> None:
        """Relays `reply` to the browser, then `finish()`, whether or not the browser stayed."""
        try:
            self._relay(reply)
        except OSError:
            pass  # the browser went away
        finally:
            finish()

    # -- WebSockets ----------------------------------------------------------------------------

    def _pipe(self) -> None:
        """A WebSocket: the handshake goes to the gateway, its answer (101, or a refusal) comes
        back as it is, and the connection's bytes are then copied both ways until one side
        closes."""
        self.close_connection = True
        self.protocol_version = "HTTP/1.1"  # for a refusal of ours: WebSocket clients want 1.1
        upstream = self.server.upstream
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        headers = {name: self.headers[name] for name in UPGRADE_FORWARDED if self.headers.get(name)}
        key = next((value for name, value in query if name == KEY_PARAMETER), "")
        if key:
            headers["authorization"] = f"Bearer {key}"
        rest = urllib.parse.urlencode([(n, v) for n, v in query if n != KEY_PARAMETER])
        target = upstream.prefix + url.path + ("?" + rest if rest else "")
        head = [
            f"GET {target} HTTP/1.1",
            f"Host: {upstream.host}:{upstream.port}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        try:
            sock = upstream.socket()
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        except OSError as error:
            self._unreachable(error)
            return
        browser = self.connection
        sock.settimeout(None)
        browser.settimeout(None)
        try:
            # The gateway's answer to the browser; once it ends, so does the browser's copy.
            back = threading.Thread(
                target=_copy, args=(sock.recv, browser, lambda: _shut(browser, socket.SHUT_WR))
            )
            back.daemon = True
            back.start()
            # What the browser sends (any bytes already buffered first); once the browser is
            # done, the gateway's connection is shut both ways (one direction alone cannot end
            # under TLS).
            _copy(self.rfile.read1, sock, lambda: _shut(sock, socket.SHUT_RDWR))
            back.join()
        finally:
            sock.close()


def _copy(read: Callable[[int], bytes], target: socket.socket, done: Callable[[], None]) -> None:
    """Copies bytes until `read` says its end has finished (or either side fails), then
    `done()`."""
    try:
        while data := read(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        done()


def _shut(sock: socket.socket, how: int) -> None:
    """A TCP shutdown, under TLS too (SSLSocket.shutdown would drop the TLS state instead)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, how)


def make_server(host: str, port: int, gateway: str) -> UiServer:
    return UiServer((host, port), Upstream(gateway))


def serve(host: str, port: int, gateway: str, open_browser: bool = False) -> int:
    try:
        server = make_server(host, port, gateway)
    except ValueError as error:
        print(f"speechmesh: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"speechmesh: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 1
    bound = server.server_address[1]
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "") else host
    url = f"http://{shown}:{bound}/"
    print(f"speechmesh ui: {url} (gateway {gateway}); Ctrl-C stops it", flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
