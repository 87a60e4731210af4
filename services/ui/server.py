"""The demo page's HTTP server: static files, a pass-through to the gateway, and the live bridge.

- `GET /` and `GET /static/NAME`: the page.
- `/v1/...` (any method): sent on to the gateway as it came (body, content type and the
  credential headers), and the answer relayed as it arrives, so raw audio and server-sent events
  pass through. Errors stay the gateway's `google.rpc.Status` JSON; an unreachable gateway is
  answered in the same shape (502, code 14).
- `POST /ui/live/KIND` (KIND `asr` or `translate`) with the stream's first request message as a
  JSON body: opens the gateway's streaming route with a chunked JSON-array body and answers
  `{"id": ...}`. `POST /ui/live/ID/audio` (raw PCM) appends an `{"audio": ...}` message,
  `POST /ui/live/ID/end` closes the array, and `GET /ui/live/ID/events` relays the gateway's
  server-sent events. Browsers send streaming request bodies only over HTTP/2, which a plain
  `http://` page cannot use, so the page posts short pieces and this server keeps one request
  open upstream.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import importlib.resources
import json
import queue
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable

#: Request headers passed on to the gateway.
FORWARDED = ("content-type", "accept", "authorization", "x-api-key")
#: Response headers relayed back to the browser.
RELAYED = ("content-type", "content-length", "content-disposition", "retry-after")
#: Largest request body taken from the browser (the gateway's own default limit is 32 MiB).
MAX_BODY = 64 * 1024 * 1024
#: Streaming routes the live bridge may open.
LIVE_ROUTES = {
    "asr": "/v1/asr:streamingRecognize",
    "translate": "/v1/translate:streamingTranslateSpeech",
}
#: A live stream with no audio for this long is closed (its request body ends).
LIVE_IDLE_S = 30.0
#: At most this many live streams at once.
MAX_LIVE = 8
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


class LiveStream:
    """One microphone stream: a streaming REST call to the gateway whose JSON-array request body
    is written piece by piece as the browser posts audio."""

    def __init__(self, upstream: Upstream, route: str, first: dict, headers: dict[str, str]):
        self.id = secrets.token_urlsafe(12)
        self.pieces: queue.Queue[bytes | None] = queue.Queue()
        self.touched = time.monotonic()
        self.ended = False
        self.relayed = False  # the gateway's answer is read once
        self.sock = upstream.socket()
        head = [
            f"POST {upstream.prefix}{route} HTTP/1.1",
            f"Host: {upstream.host}:{upstream.port}",
            "Content-Type: application/json",
            "Accept: text/event-stream",
            "Transfer-Encoding: chunked",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        self._chunk(b"[" + json.dumps(first).encode())
        threading.Thread(target=self._write, name=f"live-{self.id}", daemon=True).start()

    def _chunk(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def _write(self) -> None:
        try:
            while True:
                try:
                    piece = self.pieces.get(timeout=LIVE_IDLE_S)
                except queue.Empty:
                    piece = None
                if piece is None:
                    self._chunk(b"]")
                    self.sock.sendall(b"0\r\n\r\n")
                    return
                audio = base64.b64encode(piece).decode()
                self._chunk(b',{"audio":"%s"}' % audio.encode())
        except OSError:
            pass  # the gateway closed the call; its answer says why
        finally:
            self.ended = True

    def audio(self, data: bytes) -> None:
        self.touched = time.monotonic()
        if data:
            self.pieces.put(data)

    def end(self) -> None:
        self.touched = time.monotonic()
        self.pieces.put(None)

    def response(self) -> http.client.HTTPResponse:
        reply = http.client.HTTPResponse(self.sock, method="POST")
        reply.begin()
        return reply

    def close(self) -> None:
        self.pieces.put(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class UiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, upstream: Upstream):
        super().__init__(address, Handler)
        self.upstream = upstream
        self.files = static_files()
        self.live: dict[str, LiveStream] = {}
        self.live_lock = threading.Lock()

    def add_live(self, stream: LiveStream) -> bool:
        with self.live_lock:
            stale = [
                key
                for key, item in self.live.items()
                if time.monotonic() - item.touched > 2 * LIVE_IDLE_S
            ]
            for key in stale:
                self.live.pop(key).close()
            if len(self.live) >= MAX_LIVE:
                return False
            self.live[stream.id] = stream
            return True

    def drop_live(self, key: str) -> None:
        with self.live_lock:
            stream = self.live.pop(key, None)
        if stream is not None:
            stream.close()


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
            config = {"gateway": self.server.upstream.url, "live_routes": sorted(LIVE_ROUTES)}
            self._answer(200, json.dumps(config).encode(), "application/json")
        elif path.startswith("/ui/live/") and path.endswith("/events"):
            self._live_events(path.split("/")[3])
        else:
            self._pass()

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        parts = path.split("/")
        if path.startswith("/ui/live/") and len(parts) == 4:
            self._live_start(parts[3])
        elif path.startswith("/ui/live/") and len(parts) == 5 and parts[4] in ("audio", "end"):
            self._live_send(parts[3], parts[4])
        else:
            self._pass()

    def do_DELETE(self) -> None:
        self._pass()

    def _static(self, name: str) -> None:
        body = self.server.files.get(name)
        if body is None:
            self._error(404, 5, f"no file {name!r} in the demo page")
            return
        self._answer(200, body, STATIC_TYPES["." + name.rpartition(".")[2]])

    def _credentials(self) -> dict[str, str]:
        return {
            name: self.headers[name]
            for name in ("authorization", "x-api-key")
            if self.headers.get(name)
        }

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

    # -- the live microphone ------------------------------------------------------------------

    def _live_start(self, kind: str) -> None:
        route = LIVE_ROUTES.get(kind)
        if route is None:
            self._error(404, 5, f"no live route {kind!r}; known: {', '.join(LIVE_ROUTES)}")
            return
        body = self._body()
        if body is None:
            return
        try:
            first = json.loads(body or b"{}")
        except ValueError as error:
            self._error(400, 3, f"the first message must be JSON: {error}")
            return
        try:
            stream = LiveStream(self.server.upstream, route, first, self._credentials())
        except OSError as error:
            self._unreachable(error)
            return
        if not self.server.add_live(stream):
            stream.close()
            self._error(429, 8, f"at most {MAX_LIVE} live streams at once")
            return
        self._answer(200, json.dumps({"id": stream.id}).encode(), "application/json")

    def _live_send(self, key: str, what: str) -> None:
        stream = self.server.live.get(key)
        body = self._body()
        if body is None:
            return
        if stream is None or stream.ended:
            self._error(404, 5, "that live stream has ended")
            return
        if what == "audio":
            stream.audio(body)
        else:
            stream.end()
        self._answer(200, b"{}", "application/json")

    def _live_events(self, key: str) -> None:
        stream = self.server.live.get(key)
        if stream is None or stream.relayed:
            self._error(404, 5, "that live stream has ended or is being read already")
            return
        stream.relayed = True
        try:
            reply = stream.response()
        except (OSError, http.client.HTTPException) as error:
            self.server.drop_live(key)
            self._error(502, 14, f"the gateway ended the live stream: {error}")
            return
        self._relay_then(reply, lambda: self.server.drop_live(key))


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
        for key in list(server.live):
            server.drop_live(key)
    return 0
