"""`speechmesh up`: every service and Envoy in front of them, as local child processes.

The services are the ones in the service registry (speechmesh.runtime.registry), so a new
service joins as soon as it is in that table. Each runs as `python -m speechmesh.cli serve NAME` on
loopback with its own SPEECHMESH_<NAME>_* settings, and the others' addresses as its peers
(SPEECHMESH_<NAME>_PEERS, unless set); Envoy gets a bootstrap rendered from
SPEECHMESH_GATEWAY_* settings with the services' ports as upstreams: their gRPC ports, and the
WebSocket ports of the services with realtime sessions (SPEECHMESH_<NAME>_WEBSOCKET_PORT, passed
to the service explicitly), so `ws://localhost:8080/v1/realtime` reaches ASR's. The suite is
ready when a gRPC health check of every service through the gateway answers SERVING; then it
prints the URLs and example commands. A service that dies after it was ready is started again
(a few times); any other early exit stops everything. SIGINT (Ctrl-C) or SIGTERM stops the
children: SIGTERM, a grace period, then SIGKILL.

Identity between the services: unless SPEECHMESH_TRUSTED_HOPS says otherwise, the services
trust only calls carrying the hop token (`token`), and a run without SPEECHMESH_HOP_TOKEN(_FILE)
gets a token of its own, in a file only this user can read, given to Envoy and every service: a
program that calls a service's port directly cannot claim an identity (speechmesh.runtime.identity).

Traces: with an OTLP endpoint set (OTEL_EXPORTER_OTLP_ENDPOINT, or the gateway's own
SPEECHMESH_GATEWAY_OTLP_ENDPOINT), Envoy and every service export spans to it; each service is
named speechmesh-<name> (OTEL_SERVICE_NAME, set per child: one name for all would merge them).

The offline profile (`--offline`) builds tiny random checkpoints of the real architectures into a
cache folder and serves them to every service whose model was not chosen: no model hub, outputs
are noise, and health and ListModels report random weights. With a folder of real checkpoints
(`--models-dir`, `make run` gives ../shared/models when the checkout has it beside it), a service
it holds a known checkpoint for serves that instead (REAL_MODELS: Whisper tiny.en for ASR, the
VITS voice vits-en-joe for TTS, so the first transcription and the first spoken sentence are
real), with tiny checkpoints beside it for what it cannot do (TTS: a tiny CSM clones voices).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.gateway.clusters import realtime_cluster_name
from speechmesh.gateway.config import REALTIME_PATHS, GatewaySettings
from speechmesh.gateway.descriptors import load_descriptor_set, services_by_area
from speechmesh.gateway.envoy_process import envoy_command, validate_config, write_config
from speechmesh.runtime import identity, tracing
from speechmesh.runtime.registry import SERVICE_HEADER, SERVICES

#: service -> {settings field: tiny architecture} for the offline profile.
TINY_MODELS: dict[str, dict[str, str]] = {
    "asr": {"model": "whisper"},
    "translate": {"model": "seamless_m4t_v2"},
    "tts": {"model": "csm"},
}
#: service -> (a real checkpoint's folder name in --models-dir, {settings field: tiny
#: architecture} served beside it) for the offline profile: preferred to TINY_MODELS when there.
REAL_MODELS: dict[str, tuple[str, dict[str, str]]] = {
    "asr": ("whisper-tiny.en", {}),
    # VITS speaks in a preset voice; the tiny CSM beside it takes requests to clone one.
    "tts": ("vits-en-joe", {"extra_models": "csm"}),
}
#: service -> example commands printed once the suite is up ({url}: the gateway's base URL,
#: {ws}: its WebSocket base URL).
EXAMPLES: dict[str, list[str]] = {
    "asr": [
        "curl {url}/v1/asr/models",
        "curl --data-binary @speech.wav -H 'Content-Type: audio/wav' "
        "'{url}/v1/asr:recognizeFile?config.language_code=en'",
        "curl -F file=@speech.wav -F model=whisper-1 {url}/v1/audio/transcriptions",
        # The session.created event, then type events (Ctrl-D ends).
        "python -m websockets '{ws}/v1/realtime?intent=transcription'",
    ],
    "translate": [
        "curl -X POST {url}/v1/translate:translateText "
        """-d '{{"texts": ["Hello"], "source_language_code": "en","""
        """ "target_language_code": "fr"}}'""",
    ],
    "tts": [
        "curl -X POST {url}/v1/tts:synthesizeAudio "
        """-d '{{"text": "Hello there."}}' -o hello.wav""",
        "curl {url}/v1/audio/speech -H 'Content-Type: application/json' "
        """-d '{{"model": "tts-1", "voice": "alloy", "input": "Hello."}}' -o hello.mp3""",
    ],
}
RESTARTS = 5  # times a service that died after it was ready is started again
STOP_TIMEOUT_S = 40.0  # after SIGTERM, before SIGKILL (the services' grace period is 30 s)


def default_cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "speechmesh" / "tiny"


def _env_name(service: str, field: str) -> str:
    return SERVICES[service].env_prefix + field.upper()


def _missing_runtime(folder: pathlib.Path) -> str | None:
    """What a real checkpoint needs at run time that this machine lacks, or None: a VITS
    tokenizer that phonemizes needs the phonemizer package and the espeak-ng library."""
    try:
        tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    if not tokenizer.get("phonemize"):
        return None
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError:
        return "the phonemizer package (pip install phonemizer)"
    if not EspeakBackend.is_available():
        return "espeak-ng (apt-get install espeak-ng)"
    return None


@dataclasses.dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.Task | None = None
    restarts: int = 0
    ready: bool = False


@dataclasses.dataclass
class Service:
    name: str
    host: str
    port: int
    health_name: str
    model: str
    random_weights: bool
    #: Tiny random checkpoints served beside a real one: {settings field: folder}.
    tiny_beside: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Its realtime WebSocket port (the gateway's /v1/realtime... upstream); 0: none.
    websocket_port: int = 0


class Suite:
    """The services and Envoy as child processes of this one."""

    def __init__(
        self,
        services: list[str],
        models: dict[str, str],
        offline: bool,
        cache_dir: pathlib.Path,
        gateway: GatewaySettings | None = None,
        out: Callable[[str], None] | None = None,
        models_dir: pathlib.Path | None = None,
    ):
        self.service_names = services
        self.models = models
        self.offline = offline
        self.cache_dir = cache_dir
        self.models_dir = models_dir
        self.gateway = gateway
        self.out = out or (lambda line: print(line, flush=True))
        self.services: list[Service] = []
        self.children: list[Child] = []
        self.envoy: Child | None = None
        #: Services whose realtime WebSocket port the gateway did not reach once ready.
        self.realtime_down: list[str] = []
        self._workdir = tempfile.TemporaryDirectory(prefix="speechmesh-up-")

    # -- plan ------------------------------------------------------------------------------

    def _tiny(self, arch: str) -> pathlib.Path:
        dest = self.cache_dir / f"tiny-{arch}"
        if not (dest / "config.json").is_file():
            self.out(f"speechmesh up: building a tiny random {arch} checkpoint in {dest}")
            built = subprocess.run(
                [sys.executable, "-m", "speechmesh.cli", "models", "tiny", arch, str(dest)],
                capture_output=True,
                text=True,
            )
            if built.returncode != 0:
                raise ValueError(f"building a tiny {arch} failed:\n{built.stderr}")
        return dest

    def _real(self, name: str) -> pathlib.Path | None:
        """The real checkpoint of --models-dir the offline profile serves to `name`, or None."""
        if self.models_dir is None or name not in REAL_MODELS:
            return None
        folder = self.models_dir / REAL_MODELS[name][0]
        if not (folder / "config.json").is_file():
            return None
        missing = _missing_runtime(folder)
        if missing is not None:
            self.out(
                f"speechmesh up: {folder} needs {missing}; serving {name} a tiny random"
                " checkpoint instead"
            )
            return None
        return folder

    def plan(self) -> None:
        """Settles each service's address and model, and the gateway's settings."""
        from speechmesh.tiny.models import TINY_ARCHS

        unknown = [name for name in self.service_names if name not in SERVICES]
        if unknown:
            raise ValueError(
                f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}"
            )
        gateway_env: dict[str, str] = {}
        self.gateway = self.gateway or GatewaySettings()
        # The services read the gateway's identity settings from the gateway's own variables;
        # pass them explicitly so they match the gateway even when it was configured in code.
        identity_env = {
            identity.HEADER_ENV: self.gateway.identity_header,
            identity.AUTH_ENV: self.gateway.auth,
        }
        identity_env.update(self._hop_env())
        trace_env = self._trace_env()
        for name in self.service_names:
            env = {**os.environ, **identity_env, **trace_env}
            if tracing.endpoint(env):
                env[tracing.SERVICE_NAME_ENV] = f"speechmesh-{name}"
            env.setdefault(_env_name(name, "host"), "127.0.0.1")
            env.setdefault(_env_name(name, "log_format"), "json")
            settings_class = SERVICES[name].settings_class()
            random_weights = False
            tiny_beside: dict[str, str] = {}
            real = None
            offline_choice = self.offline and _env_name(name, "model") not in os.environ
            if name not in self.models and offline_choice:
                real = self._real(name)
            if name in self.models:
                env[_env_name(name, "model")] = self.models[name]
            elif real is not None:
                env[_env_name(name, "model")] = str(real)
                for field, arch in REAL_MODELS[name][1].items():
                    if _env_name(name, field) not in os.environ:
                        env[_env_name(name, field)] = tiny_beside[field] = str(self._tiny(arch))
            elif offline_choice:
                tiny = TINY_MODELS.get(name, {})
                if not tiny or any(arch not in TINY_ARCHS for arch in tiny.values()):
                    self.out(
                        f"speechmesh up: no tiny checkpoint for {name}; serving its configured"
                        f" model (set {_env_name(name, 'model')} to choose one)"
                    )
                else:
                    for field, arch in tiny.items():
                        env[_env_name(name, field)] = str(self._tiny(arch))
                    random_weights = True
            realtime = f"{name}_websocket_upstream" in GatewaySettings.model_fields
            keys = (
                ("host", "port", "model", "websocket_port")
                if realtime
                else ("host", "port", "model")
            )
            settings = settings_class(
                **{key: env[_env_name(name, key)] for key in keys if _env_name(name, key) in env}
            )
            if settings.port == 0:
                raise ValueError(f"{_env_name(name, 'port')}=0: the gateway needs a fixed port")
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
            gateway_env[f"{name}_upstream"] = f"{host}:{settings.port}"
            websocket_port = 0
            if realtime:
                # The realtime WebSocket port: given to the service explicitly, and to the
                # gateway as the upstream of its realtime route.
                websocket_port = settings.websocket_port
                if websocket_port == 0:
                    raise ValueError(
                        f"{_env_name(name, 'websocket_port')}=0: the gateway needs a fixed port"
                    )
                env[_env_name(name, "websocket_port")] = str(websocket_port)
                gateway_env[f"{name}_websocket_upstream"] = f"{host}:{websocket_port}"
            self.children.append(
                Child(name, [sys.executable, "-m", "speechmesh.cli", "serve", name], env)
            )
            self.services.append(
                Service(
                    name,
                    host,
                    settings.port,
                    "",
                    settings.model,
                    random_weights,
                    tiny_beside,
                    websocket_port,
                )
            )
        # Each service learns where the others are (ASR asks them for /v1/models), unless set.
        for child in self.children:
            peers = ",".join(
                f"{service.name}={service.host}:{service.port}"
                for service in self.services
                if service.name != child.name
            )
            if peers:
                child.env.setdefault(_env_name(child.name, "peers"), peers)
        self.gateway = self.gateway.model_copy(update=gateway_env)
        files = load_descriptor_set(self.gateway.descriptor_set)
        found = services_by_area(files, [service.name for service in self.services])
        for service in self.services:
            if not found.get(service.name):
                raise ValueError(f"no speechmesh.{service.name}.v1 service in the descriptor set")
            service.health_name = found[service.name][0][0]
        config = write_config(self.gateway, pathlib.Path(self._workdir.name) / "envoy.yaml")
        ok, output = validate_config(self.gateway, config)
        if not ok:
            raise ValueError(f"Envoy rejected the rendered configuration:\n{output}")
        self.envoy = Child("gateway", envoy_command(self.gateway, config), dict(os.environ))

    def _hop_env(self) -> dict[str, str]:
        """Which hops the services trust (SPEECHMESH_TRUSTED_HOPS, default token) and, in token
        mode without a token given, a new one for this run in a file of the work folder, also
        set as the gateway's (Envoy sends it upstream)."""
        assert self.gateway is not None
        mode = os.environ.get(identity.TRUSTED_HOPS_ENV, "").strip() or "token"
        env = {identity.TRUSTED_HOPS_ENV: mode}
        given = os.environ.get(identity.HOP_TOKEN_FILE_ENV) or os.environ.get(
            identity.HOP_TOKEN_ENV
        )
        if mode != "token" or given:
            return env
        if self.gateway.hop_token_file is not None:  # the gateway's own: the services' too
            env[identity.HOP_TOKEN_FILE_ENV] = str(self.gateway.hop_token_file)
            return env
        if self.gateway.hop_token.get_secret_value():
            env[identity.HOP_TOKEN_ENV] = self.gateway.hop_token.get_secret_value()
            return env
        path = pathlib.Path(self._workdir.name) / "hop-token"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        env[identity.HOP_TOKEN_FILE_ENV] = str(path)
        self.gateway = self.gateway.model_copy(update={"hop_token_file": path})
        return env

    def _trace_env(self) -> dict[str, str]:
        """The services' tracing variables: none when the gateway traces nothing; else the
        gateway's collector unless OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT names one already."""
        assert self.gateway is not None
        collector = self.gateway.otlp_collector()
        if collector is None or tracing.endpoint():
            return {}
        host, port, tls = collector
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"{'https' if tls else 'http'}://{host}:{port}"}

    # -- processes -------------------------------------------------------------------------

    async def _start(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=1 << 20,
            start_new_session=True,  # Ctrl-C reaches this process only; it stops the children
        )
        child.reader = asyncio.create_task(self._relay(child, child.process))
        self.out(f"speechmesh up: started {child.name} (pid {child.process.pid})")

    async def _relay(self, child: Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        prefix = f"[{child.name}] "
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line over the stream limit: pass it on in pieces
                line = await process.stdout.read(1 << 16)
            if not line:
                break
            self.out(prefix + line.decode(errors="replace").rstrip("\n"))

    async def start(self) -> None:
        for child in self.children:
            await self._start(child)
        assert self.envoy is not None
        await self._start(self.envoy)

    def _exited(self) -> Child | None:
        for child in [*self.children, self.envoy]:
            if child and child.process and child.process.returncode is not None:
                return child
        return None

    async def _health(self, channel, service: Service) -> int:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service.health_name),
                metadata=[(SERVICE_HEADER, service.name)],
                timeout=2,
            )
        except grpc.aio.AioRpcError:
            return health_pb2.HealthCheckResponse.UNKNOWN
        return reply.status

    def _channel(self):
        assert self.gateway is not None
        target = f"127.0.0.1:{self.gateway.port}"
        if self.gateway.tls:
            assert self.gateway.tls_cert_file is not None
            roots = self.gateway.tls_cert_file.read_bytes()
            return grpc.aio.secure_channel(
                target,
                grpc.ssl_channel_credentials(root_certificates=roots),
                options=[("grpc.ssl_target_name_override", "localhost")],
            )
        return grpc.aio.insecure_channel(target)

    async def wait_ready(self, timeout_s: float) -> None:
        """Until every service answers SERVING through the gateway; raises on a child's exit
        or the timeout."""
        deadline = time.monotonic() + timeout_s
        pending = {service.name: service for service in self.services}
        async with self._channel() as channel:
            while pending:
                exited = self._exited()
                if exited is not None:
                    hint = (
                        ""
                        if exited is self.envoy or self.offline
                        else (
                            "; without the model hub, `speechmesh up --offline` serves tiny"
                            " checkpoints"
                        )
                    )
                    raise RuntimeError(
                        f"{exited.name} exited with code {exited.process.returncode}"
                        f" before the suite was ready (its log is above){hint}"
                    )
                for name, service in list(pending.items()):
                    if (
                        await self._health(channel, service)
                        == health_pb2.HealthCheckResponse.SERVING
                    ):
                        del pending[name]
                        self.out(f"speechmesh up: {name} is SERVING through the gateway")
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not SERVING after {timeout_s:g} s: {', '.join(pending)}")
                if pending:
                    await asyncio.sleep(0.5)
        for child in self.children:
            child.ready = True
        self.realtime_down = await self._wait_realtime(2 * self.gateway.health_check_interval_s + 1)

    def _admin_clusters(self) -> str:
        assert self.gateway is not None
        url = f"http://{self.gateway.admin_host}:{self.gateway.admin_port}/clusters"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read().decode()
        except OSError:
            return ""

    async def _wait_realtime(self, timeout_s: float) -> list[str]:
        """Until Envoy's health checks find the WebSocket port of every service with realtime
        sessions (TCP connects, which start before the models load; a few seconds at most):
        the services whose port it has not found after `timeout_s` (the banner says so)."""
        clusters = {
            realtime_cluster_name(service.name): service.name
            for service in self.services
            if service.websocket_port
        }
        deadline = time.monotonic() + timeout_s
        while clusters:
            text = await asyncio.to_thread(self._admin_clusters)
            healthy = set(re.findall(r"^(\w+)::[^\n]*::health_flags::healthy$", text, re.M))
            missing = [name for cluster, name in clusters.items() if cluster not in healthy]
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.2)
        return []

    async def supervise(self, stop: asyncio.Event) -> int:
        """Until `stop` is set: restarts a service that died after it was ready (a few times);
        returns 1 when Envoy or a service is gone for good, 0 when stopped."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            if stop.is_set():
                break
            exited = self._exited()
            if exited is None:
                continue
            code = exited.process.returncode
            if exited is self.envoy or exited.restarts >= RESTARTS:
                self.out(f"speechmesh up: {exited.name} exited with code {code}; stopping")
                return 1
            exited.restarts += 1
            self.out(
                f"speechmesh up: {exited.name} exited with code {code}; starting it again"
                f" ({exited.restarts}/{RESTARTS})"
            )
            if exited.reader is not None:
                await exited.reader
            await self._start(exited)
        return 0

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to every child (Envoy first), then SIGKILL to those still running."""
        running = [
            child
            for child in [self.envoy, *self.children]
            if child is not None and child.process is not None and child.process.returncode is None
        ]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        if running:
            self.out(f"speechmesh up: stopping {', '.join(child.name for child in running)}")
        waits = [asyncio.ensure_future(child.process.wait()) for child in running]
        # None running (nothing started yet, or all gone): asyncio.wait refuses an empty set.
        _, late = await asyncio.wait(waits, timeout=timeout_s) if waits else (set(), set())
        for child in running:
            if child.process.returncode is None:
                self.out(f"speechmesh up: {child.name} did not stop in {timeout_s:g} s; killing")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
        if late:
            await asyncio.wait(late, timeout=5)
        readers = [c.reader for c in [self.envoy, *self.children] if c is not None and c.reader]
        if readers:
            await asyncio.wait(readers, timeout=2)
        self._workdir.cleanup()

    # -- telling the user ------------------------------------------------------------------

    def banner(self) -> list[str]:
        assert self.gateway is not None
        scheme = "https" if self.gateway.tls else "http"
        shown = "localhost" if self.gateway.host in ("0.0.0.0", "::") else self.gateway.host
        url = f"{scheme}://{shown}:{self.gateway.port}"
        ws_url = f"{'wss' if self.gateway.tls else 'ws'}://{shown}:{self.gateway.port}"
        grpc_target = f"{shown}:{self.gateway.port}"
        tls = "-insecure" if self.gateway.tls else "-plaintext"
        lines = [
            "",
            "speechmesh is up",
            f"  gateway    {url}   gRPC and REST (Envoy admin:"
            f" http://{self.gateway.admin_host}:{self.gateway.admin_port})",
        ]
        realtime = [
            f"{ws_url}{REALTIME_PATHS[service.name]} ({service.name}"
            + (
                ": its WebSocket port does not answer)"
                if service.name in self.realtime_down
                else ")"
            )
            for service in self.services
            if service.websocket_port and service.name in REALTIME_PATHS
        ]
        if realtime:
            lines.append(f"  realtime   {', '.join(realtime)}   WebSocket")
        for service in self.services:
            note = "  (tiny random weights: outputs are noise)" if service.random_weights else ""
            if service.tiny_beside:
                beside = ", ".join(pathlib.Path(f).name for f in service.tiny_beside.values())
                note = f"  (and {beside}: tiny random weights, outputs are noise)"
            lines.append(
                f"  {service.name:<10} {service.host}:{service.port}   model {service.model}{note}"
            )
        if self.gateway.upstream_hop_token():
            lines.append(
                "  identity   the services believe the identity header only from the gateway"
                " and each other (hop token)"
            )
        if self.gateway.otlp_endpoint:
            lines.append(f"  traces     {self.gateway.otlp_endpoint}   OTLP/gRPC, every service")
        if self.gateway.auth != "none":
            lines.append(
                f"  auth: {self.gateway.auth}; add -H 'Authorization: Bearer ...' to the commands"
            )
        lines += ["", "Try:"]
        for service in self.services:
            for example in EXAMPLES.get(service.name, []):
                lines.append("  " + example.format(url=url, ws=ws_url))
        protoset = self.gateway.descriptor_set
        lines += [
            f"  grpcurl {tls} -protoset {protoset} {grpc_target} list",
            f"  grpcurl {tls} -H '{SERVICE_HEADER}: {self.services[0].name}' {grpc_target} list",
            "",
            "Ctrl-C stops everything.",
        ]
        return lines


async def run_suite(suite: Suite, ready_timeout_s: float) -> int:
    """Plans, starts, waits for readiness, supervises until SIGINT/SIGTERM, stops."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        suite.plan()
    except (ValueError, FileNotFoundError) as error:
        suite.out(f"speechmesh up: {error}")
        return 2
    code = 0
    try:
        await suite.start()
        ready = asyncio.create_task(suite.wait_ready(ready_timeout_s))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
        else:
            stopping.cancel()
            try:
                ready.result()
            except (RuntimeError, TimeoutError) as error:
                suite.out(f"speechmesh up: {error}")
                code = 1
            else:
                for line in suite.banner():
                    suite.out(line)
                code = await suite.supervise(stop)
    finally:
        await suite.stop()
    return code
