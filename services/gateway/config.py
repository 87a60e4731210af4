"""Gateway settings: SPEECHMESH_GATEWAY_* environment variables, or `speechmesh gateway` flags.

These settings are the one source of truth for the Envoy bootstrap that envoy_config.py renders:
listener, upstream addresses, limits, timeouts and the edge-security switches.
"""

from __future__ import annotations

import json
import os
import pathlib
import urllib.parse
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from speechmesh.runtime import identity
from speechmesh.runtime.registry import SERVICES

MiB = 1024 * 1024
ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
#: Where `make protos` (tools/gen_protos.py) writes the descriptor set.
DEFAULT_DESCRIPTOR_SET = ROOT / "build" / "speechmesh.pb"
#: The service areas the gateway fronts (`speechmesh.<area>.v1`), with their default ports.
UPSTREAM_PORTS = {spec.name: spec.port for spec in SERVICES.values()}
#: The services with realtime WebSocket sessions, with their default WebSocket ports.
REALTIME_PORTS = {
    spec.name: spec.websocket_port for spec in SERVICES.values() if spec.websocket_port
}
#: The gateway path of each service's realtime WebSocket endpoint (the service serves the same
#: path on its WebSocket port). Matched exactly; any query string goes along.
REALTIME_PATHS = {"asr": "/v1/realtime", "tts": "/v1/realtime/speech"}


def _split_list(value: object) -> object:
    """Lists from the environment: a JSON array, or comma-separated values."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def _otlp_endpoint_from_env() -> str:
    """The services' standard OTLP variables, so one setting points the whole suite at a
    collector (SPEECHMESH_GATEWAY_OTLP_ENDPOINT, when set, wins)."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def _hop_token_file_from_env() -> pathlib.Path | None:
    """The services' SPEECHMESH_HOP_TOKEN_FILE (SPEECHMESH_GATEWAY_HOP_TOKEN_FILE, when set,
    wins), so one variable gives the gateway and the services the same secret."""
    value = os.environ.get(identity.HOP_TOKEN_FILE_ENV, "").strip()
    return pathlib.Path(value) if value else None


def _hop_token_from_env() -> SecretStr:
    return SecretStr(os.environ.get(identity.HOP_TOKEN_ENV, "").strip())


def _split(address: str) -> tuple[str, int]:
    """host:port (validated) -> (host, port); [v6] brackets dropped."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECHMESH_GATEWAY_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address the gateway listens on.")
    port: int = Field(
        8080, ge=1, le=65535, description="One port for gRPC (HTTP/2) and REST (HTTP/1.1, h2c)."
    )
    admin_host: str = Field("127.0.0.1", description="Envoy admin address (keep it loopback).")
    admin_port: int = Field(9901, ge=1, le=65535, description="Envoy admin port.")
    asr_upstream: str = Field("127.0.0.1:50051", description="host:port of the ASR service.")
    translate_upstream: str = Field(
        "127.0.0.1:50052", description="host:port of the translate service."
    )
    tts_upstream: str = Field("127.0.0.1:50053", description="host:port of the TTS service.")
    asr_websocket_upstream: str = Field(
        "127.0.0.1:50061",
        description="host:port of the ASR service's WebSocket port (realtime transcription).",
    )
    tts_websocket_upstream: str = Field(
        "127.0.0.1:50063",
        description="host:port of the TTS service's WebSocket port (realtime speech).",
    )
    descriptor_set: pathlib.Path = Field(
        DEFAULT_DESCRIPTOR_SET, description="Descriptor set from `make protos`."
    )
    max_request_bytes: int = Field(
        32 * MiB, ge=1024, le=2**31 - 1, description="Largest REST request body; 413 past it."
    )
    max_response_bytes: int = Field(
        64 * MiB, ge=1024, le=2**31 - 1, description="Largest transcoded REST response body."
    )
    unary_timeout_s: float = Field(
        300.0, ge=0, description="Route timeout of unary calls (0: none); streams have none."
    )
    stream_idle_timeout_s: float = Field(
        300.0,
        ge=0,
        description="A stream (or WebSocket session) with no bytes either way for this long is"
        " reset; keep it above the services' 20 s WebSocket pings.",
    )
    connect_timeout_s: float = Field(2.0, gt=0, description="Upstream connect timeout.")
    health_check_interval_s: float = Field(
        5.0,
        gt=0,
        description="Active gRPC health checks of each upstream (TCP connects to the WebSocket"
        " ports), every N seconds.",
    )
    # Inside a service mesh (deploy/kubernetes/components/istio): the sidecar beside the gateway
    # routes by :authority and balances per request with its own outlier detection.
    upstream_host_rewrite: bool = Field(
        False,
        description="Send each upstream request with its service's host name (asr, tts, ...) as"
        " :authority instead of the client's, as a mesh sidecar that routes by authority needs.",
    )
    outlier_detection: bool = Field(
        True,
        description="Eject an upstream host after consecutive failures. Off inside a mesh: the"
        " upstream is one Service address the sidecar balances and ejects behind.",
    )
    auth: Literal["none", "api_key", "jwt"] = Field(
        "none", description="Authentication at the edge: none, api_key or jwt."
    )
    api_keys_file: pathlib.Path | None = Field(
        None, description="auth=api_key: a file of `IDENTITY KEY` lines ('#' comments)."
    )
    jwks_file: pathlib.Path | None = Field(None, description="auth=jwt: a local JWKS (JSON).")
    jwt_issuer: str = Field("", description="auth=jwt: required `iss` (empty: any).")
    jwt_audiences: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="auth=jwt: accepted `aud` values (empty: any)."
    )
    jwt_identity_claim: str = Field("sub", description="auth=jwt: the claim naming the caller.")
    identity_header: str = Field(
        identity.DEFAULT_HEADER,
        description="Header carrying the authenticated caller to the services; set by Envoy,"
        " stripped from clients.",
    )
    rate_limit_requests: int = Field(
        0, ge=0, description="Requests per client per interval (0: no rate limit); 429 past it."
    )
    rate_limit_interval_s: float = Field(
        1.0, ge=0.05, description="Token refill interval of the per-client rate limit."
    )
    rate_limit_burst: int = Field(
        0, ge=0, description="Bucket size of the per-client rate limit (0: rate_limit_requests)."
    )
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed cross-origin (comma-separated; '*' any; empty: none);"
        " when listed, also the only `Origin`s a realtime WebSocket may come from.",
    )
    tls_cert_file: pathlib.Path | None = Field(None, description="PEM certificate: enables TLS.")
    tls_key_file: pathlib.Path | None = Field(None, description="PEM private key for TLS.")
    access_log: bool = Field(True, description="One JSON access-log line per request on stdout.")
    otlp_endpoint: str = Field(
        default_factory=_otlp_endpoint_from_env,
        description="OTLP/gRPC collector for traces, http://HOST:PORT (https:// for TLS); empty:"
        " tracing off. Defaults to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or"
        " OTEL_EXPORTER_OTLP_ENDPOINT, as the services read them.",
    )
    tracing_sampling_percent: float = Field(
        100.0,
        ge=0,
        le=100,
        description="With tracing on, the share of requests without a sampled traceparent that"
        " Envoy starts a trace for, percent; the services follow its decision.",
    )
    hop_token_file: pathlib.Path | None = Field(
        default_factory=_hop_token_file_from_env,
        description="A file holding the hop token: Envoy sends it to every upstream in"
        " x-speechmesh-hop, so services with SPEECHMESH_TRUSTED_HOPS=token believe the identity"
        " it sets. Defaults to SPEECHMESH_HOP_TOKEN_FILE, as the services read it; unset: none.",
    )
    hop_token: SecretStr = Field(
        default_factory=_hop_token_from_env,
        description="The hop token itself, when no file is given (default SPEECHMESH_HOP_TOKEN).",
    )
    tracing_service_name: str = Field(
        "speechmesh-gateway", min_length=1, description="The gateway's service.name in traces."
    )
    envoy_binary: str = Field("envoy", description="The Envoy executable `speechmesh up` runs.")

    @field_validator("jwt_audiences", "cors_allowed_origins", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator(
        "asr_upstream",
        "translate_upstream",
        "tts_upstream",
        "asr_websocket_upstream",
        "tts_websocket_upstream",
    )
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port, got {value!r}")
        return value

    @field_validator("identity_header")
    @classmethod
    def _header(cls, value: str) -> str:
        return identity.header_name(value)

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp(cls, value: str) -> str:
        value = value.strip()
        if value:
            otlp_address(value)
        return value

    @model_validator(mode="after")
    def _switches(self) -> GatewaySettings:
        if self.auth == "api_key":
            if self.api_keys_file is None:
                raise ValueError(
                    "auth=api_key needs api_keys_file (SPEECHMESH_GATEWAY_API_KEYS_FILE)"
                )
            if not self.api_keys_file.is_file():
                raise ValueError(f"api_keys_file {self.api_keys_file} is not a file")
        if self.auth == "jwt":
            if self.jwks_file is None:
                raise ValueError("auth=jwt needs jwks_file (SPEECHMESH_GATEWAY_JWKS_FILE)")
            if not self.jwks_file.is_file():
                raise ValueError(f"jwks_file {self.jwks_file} is not a file")
        if self.hop_token_file is not None or self.hop_token.get_secret_value():
            identity.hop_token(self.hop_token_file, self.hop_token.get_secret_value())
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a file")
        return self

    def upstreams(self) -> dict[str, tuple[str, int]]:
        """area -> (host, port) of every service the gateway fronts."""
        return {area: _split(getattr(self, f"{area}_upstream")) for area in UPSTREAM_PORTS}

    def realtime_upstreams(self) -> dict[str, tuple[str, int]]:
        """area -> (host, port) of the WebSocket port of every service with realtime sessions."""
        return {
            area: _split(getattr(self, f"{area}_websocket_upstream"))
            for area in REALTIME_PORTS
            if area in REALTIME_PATHS
        }

    def upstream_hop_token(self) -> str:
        """The hop token Envoy sends upstream ("" when none is set)."""
        if self.hop_token_file is None and not self.hop_token.get_secret_value():
            return ""
        return identity.hop_token(self.hop_token_file, self.hop_token.get_secret_value())

    def otlp_collector(self) -> tuple[str, int, bool] | None:
        """(host, port, TLS) of the trace collector, or None when tracing is off."""
        return otlp_address(self.otlp_endpoint) if self.otlp_endpoint else None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def api_keys(self) -> list[tuple[str, str]]:
        """(identity, key) pairs from api_keys_file."""
        if self.api_keys_file is None:
            return []
        pairs = []
        for number, raw in enumerate(self.api_keys_file.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(
                    f"{self.api_keys_file}:{number}: expected `IDENTITY KEY`, got {raw!r}"
                )
            pairs.append((parts[0], parts[1]))
        if not pairs:
            raise ValueError(f"{self.api_keys_file} holds no `IDENTITY KEY` line")
        keys = [key for _, key in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.api_keys_file}: a key appears twice")
        return pairs


def otlp_address(endpoint: str) -> tuple[str, int, bool]:
    """(host, port, TLS) of an OTLP/gRPC endpoint: http://HOST[:PORT] (plaintext),
    https://HOST[:PORT] (TLS) or HOST:PORT (plaintext); the port defaults to 4317. ValueError
    for anything else."""
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"an OTLP endpoint is http://HOST:PORT or https://HOST:PORT, got {endpoint!r}"
        )
    try:
        port = parsed.port or 4317
    except ValueError:
        raise ValueError(f"bad port in the OTLP endpoint {endpoint!r}") from None
    if parsed.path not in ("", "/"):
        raise ValueError(
            f"the OTLP endpoint {endpoint!r} has a path: gRPC takes HOST:PORT only (a"
            " /v1/traces URL is OTLP over HTTP, which the gateway does not speak)"
        )
    return parsed.hostname, port, parsed.scheme == "https"
