"""Gateway fixtures: `speechmesh up` on tiny checkpoints, extra Envoys in front of its services,
a fake upstream that echoes the caller's identity, and small HTTP helpers.

Everything runs on loopback, on free ports, with the real Envoy binary and real service
processes. One `speechmesh up` serves the whole folder; each Envoy variant (auth, limits, TLS)
takes about a second to start.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import http.client
import json
import os
import pathlib
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from speechmesh.asr.v1 import asr_pb2
from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_process import envoy_command, write_config
from speechmesh.runtime.registry import SERVICES
from tests.servers import free_port, list_models_server

UP_READY_S = 180.0


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclasses.dataclass
class Gateway:
    port: int
    admin_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            reply = connection.getresponse()
            return Response(
                reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
            )
        finally:
            connection.close()

    def get(self, path: str, **headers) -> Response:
        return self.request("GET", path, headers=_headers(headers))

    def post_json(self, path: str, payload, **headers) -> Response:
        merged = {"Content-Type": "application/json", **_headers(headers)}
        return self.request("POST", path, json.dumps(payload).encode(), merged)

    def clusters(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/clusters"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()

    def wait_healthy(self, clusters: list[str], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                text = self.clusters()
            except OSError:
                text = ""
            healthy = set(re.findall(r"^(\w+)::[^\n]*::health_flags::healthy$", text, re.M))
            if set(clusters) <= healthy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"clusters {clusters} not healthy:\n{text[-2000:]}")
            time.sleep(0.2)


def _headers(headers: dict) -> dict:
    """Keyword headers: x_api_key -> x-api-key."""
    return {key.replace("_", "-"): value for key, value in headers.items()}


# -- speechmesh up ---------------------------------------------------------------------------


@dataclasses.dataclass
class Up:
    process: subprocess.Popen
    lines: list[str]
    gateway: Gateway
    ports: dict[str, int]
    #: The hop token its gateway and services share (speechmesh.runtime.identity), in a file
    #: the test wrote, so that extra Envoys in front of the same services carry it too; "" when
    #: the suite trusts any hop.
    hop_token_file: pathlib.Path | None = None

    @property
    def hop_token(self) -> str:
        return self.hop_token_file.read_text().strip() if self.hop_token_file else ""

    def pids(self) -> dict[str, int]:
        """The latest pid `speechmesh up` started for each child."""
        found = {}
        for line in list(self.lines):
            match = re.match(r"speechmesh up: started (\w+) \(pid (\d+)\)", line)
            if match:
                found[match.group(1)] = int(match.group(2))
        return found

    def wait_line(self, pattern: str, start: int = 0, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if re.search(pattern, line):
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.lines[-40:])
        raise AssertionError(f"no line matching {pattern!r} from speechmesh up:\n{tail}")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> pathlib.Path:
    """Where every `speechmesh up --offline` of the session builds its tiny checkpoints (once)."""
    return tmp_path_factory.mktemp("tiny-cache")


@contextlib.contextmanager
def run_up(
    tmp_path_factory,
    cache: pathlib.Path,
    services: list[str],
    env_overrides: dict[str, str],
    args: tuple[str, ...] = (),
) -> Iterator[Up]:
    """`speechmesh up --offline` with `services` on tiny checkpoints, on free ports, with the
    SPEECHMESH_* variables of `env_overrides` and more arguments `args`; stopped (and checked
    stopped) on exit."""
    ports = {name: free_port() for name in [*services, "gateway", "admin"]}
    env = dict(os.environ)
    for name in services:
        prefix = f"SPEECHMESH_{name.upper()}_"
        env[prefix + "PORT"] = str(ports[name])
        if SERVICES[name].websocket_port:
            # The realtime WebSocket port (`<name>_websocket` in Up.ports).
            ports[f"{name}_websocket"] = free_port()
            env[prefix + "WEBSOCKET_PORT"] = str(ports[f"{name}_websocket"])
        env[prefix + "METRICS_PORT"] = "0"
        # The services' own grace period bounds how long stopping takes.
        env[prefix + "GRACE_PERIOD_S"] = "2"
    if "tts" in services:
        env["SPEECHMESH_TTS_VOICES_DIR"] = str(tmp_path_factory.mktemp("voices"))
    # `speechmesh up` trusts the hop token by default and makes one per run; the test gives it
    # one it knows instead (unless told otherwise), for the Envoys it adds (run_keyed_envoy).
    hop_token_file = None
    hop_variables = ("SPEECHMESH_TRUSTED_HOPS", "SPEECHMESH_HOP_TOKEN", "SPEECHMESH_HOP_TOKEN_FILE")
    if not any(name in env_overrides for name in hop_variables):
        hop_token_file = tmp_path_factory.mktemp("hop") / "token"
        hop_token_file.write_text(secrets.token_urlsafe(32) + "\n")
        env["SPEECHMESH_HOP_TOKEN_FILE"] = str(hop_token_file)
    elif env_overrides.get("SPEECHMESH_HOP_TOKEN_FILE"):
        hop_token_file = pathlib.Path(env_overrides["SPEECHMESH_HOP_TOKEN_FILE"])
    env.update(
        {
            "SPEECHMESH_GATEWAY_HOST": "127.0.0.1",
            "SPEECHMESH_GATEWAY_PORT": str(ports["gateway"]),
            "SPEECHMESH_GATEWAY_ADMIN_PORT": str(ports["admin"]),
            "SPEECHMESH_GATEWAY_HEALTH_CHECK_INTERVAL_S": "1",
            **env_overrides,
        }
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speechmesh.cli",
            "up",
            "--offline",
            "--services",
            ",".join(services),
            "--cache-dir",
            str(cache),
            "--ready-timeout",
            str(UP_READY_S),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    suite = Up(process, lines, Gateway(ports["gateway"], ports["admin"]), ports, hop_token_file)
    try:
        suite.wait_line(r"^speechmesh is up$", timeout_s=UP_READY_S + 30)
        yield suite
    finally:
        children = suite.pids()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        reader.join(timeout=5)
        assert code == 0, "\n".join(lines[-40:])
        for name, pid in children.items():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
                pytest.fail(f"{name} (pid {pid}) still runs after speechmesh up stopped")


@pytest.fixture(scope="session")
def up(tmp_path_factory, tiny_cache) -> Iterator[Up]:
    """`speechmesh up --offline` with ASR, translate and TTS on tiny checkpoints, on free
    ports."""
    with run_up(tmp_path_factory, tiny_cache, ["asr", "translate", "tts"], {}) as suite:
        yield suite


# -- more Envoys in front of the same services ---------------------------------------------


@contextlib.contextmanager
def run_envoy(
    tmp_path: pathlib.Path, healthy: list[str], **overrides
) -> Iterator[tuple[Gateway, GatewaySettings]]:
    """An Envoy rendered from GatewaySettings(**overrides) on free ports, until its `healthy`
    clusters are."""
    settings = GatewaySettings(
        host="127.0.0.1",
        port=free_port(),
        admin_port=free_port(),
        health_check_interval_s=1,
        **overrides,
    )
    config = write_config(settings, tmp_path / f"envoy-{settings.port}.yaml")
    log = (tmp_path / f"envoy-{settings.port}.log").open("w")
    process = subprocess.Popen(
        envoy_command(settings, config), stdout=log, stderr=subprocess.STDOUT
    )
    gateway = Gateway(settings.port, settings.admin_port)
    try:
        gateway.wait_healthy(healthy)
        yield gateway, settings
    finally:
        stop(process, timeout_s=10)
        log.close()


def stop(process: subprocess.Popen, timeout_s: float) -> None:
    """Terminates a process, and kills it if it has not ended after `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def run_keyed_envoy(
    tmp_path: pathlib.Path, up: Up, api_keys: pathlib.Path, healthy: list[str], services: list[str]
) -> Iterator[tuple[Gateway, GatewaySettings]]:
    """run_envoy with API keys (the `api_keys` file) in front of `services` of `up`, sending
    its hop token like up's own gateway."""
    upstreams = {f"{name}_upstream": f"127.0.0.1:{up.ports[name]}" for name in services}
    with run_envoy(
        tmp_path,
        healthy,
        auth="api_key",
        api_keys_file=api_keys,
        hop_token_file=up.hop_token_file,
        **upstreams,
    ) as started:
        yield started


# -- a fake ASR upstream that tells who called ----------------------------------------------


@dataclasses.dataclass
class FakeUpstream:
    port: int
    #: Metadata of each ListModels call, in order.
    calls: list[dict[str, str]]


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[FakeUpstream]:
    """A gRPC server with ASR's ListModels, answering the caller's identity header (as Envoy
    passed it) in request_id; health SERVING."""
    calls: list[dict[str, str]] = []

    def list_models(request, context):
        metadata = dict(context.invocation_metadata())
        calls.append(metadata)
        return asr_pb2.ListModelsResponse(request_id=metadata.get("x-speechmesh-identity", ""))

    server, port = list_models_server(list_models, max_workers=4, healthy=True)
    try:
        yield FakeUpstream(port, calls)
    finally:
        server.stop(0)


# -- credentials ------------------------------------------------------------------------------

JWT_SECRET = b"speechmesh-gateway-test-secret-0123456789"
JWT_ISSUER = "https://issuer.speechmesh.test"
JWT_AUDIENCE = "speechmesh"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict, secret: bytes = JWT_SECRET) -> str:
    """An HS256 token (the JWKS below holds the same symmetric key)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "test"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


@pytest.fixture(scope="session")
def credentials(tmp_path_factory) -> dict[str, pathlib.Path]:
    """An API keys file (alice, bob), a JWKS, and a self-signed certificate for localhost."""
    folder = tmp_path_factory.mktemp("credentials")
    keys = folder / "api-keys.txt"
    keys.write_text("# identity key\nalice alice-key-0001\nbob bob-key-0002\n")
    jwks = folder / "jwks.json"
    jwks.write_text(
        json.dumps({"keys": [{"kty": "oct", "kid": "test", "alg": "HS256", "k": _b64(JWT_SECRET)}]})
    )
    cert, key = folder / "cert.pem", folder / "key.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        capture_output=True,
    )
    found = {"api_keys": keys, "jwks": jwks}
    if made.returncode == 0:
        found.update(cert=cert, key=key)
    return found
