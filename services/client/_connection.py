"""How a client connects: target, TLS, credentials, keepalive and the retry policy."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2

# The generated modules register their services in the default descriptor pool.
from speechmesh.asr.v1 import asr_pb2  # noqa: F401
from speechmesh.runtime.registry import SERVICES as REGISTRY
from speechmesh.translate.v1 import translate_pb2  # noqa: F401
from speechmesh.tts.v1 import tts_pb2  # noqa: F401

DEFAULT_TARGET = "localhost:8080"
TARGET_ENV = "SPEECHMESH_TARGET"
API_KEY_ENV = "SPEECHMESH_API_KEY"
TOKEN_ENV = "SPEECHMESH_TOKEN"
#: Full proto service names of the services, by their short names.
SERVICES = {
    spec.name: descriptor_pool.Default().FindServiceByName(spec.proto_service)
    for spec in REGISTRY.values()
}
MAX_MESSAGE_BYTES = 128 << 20


#: Each service's OperationsService (its long-running jobs), by the service's short name.
OPERATIONS_SERVICES = {
    name: descriptor_pool.Default().FindServiceByName(
        service.full_name.rsplit(".", 1)[0] + ".OperationsService"
    )
    for name, service in SERVICES.items()
}


def unary_methods() -> list[dict[str, str]]:
    """Every unary method of the three services and of their OperationsService, and health
    Check: what may be retried."""
    names = [
        {"service": service.full_name, "method": method.name}
        for service in (*SERVICES.values(), *OPERATIONS_SERVICES.values())
        for method in service.methods
        if not method.client_streaming and not method.server_streaming
    ]
    health = health_pb2.DESCRIPTOR.services_by_name["Health"]
    return [*names, {"service": health.full_name, "method": "Check"}]


def service_config(retries: int) -> str:
    """A gRPC service config retrying unary calls on UNAVAILABLE `retries` times (streams are
    never retried: their requests may already be consumed)."""
    if retries <= 0:
        return json.dumps({"methodConfig": []})
    policy = {
        "maxAttempts": min(retries + 1, 5),  # gRPC caps attempts at 5
        "initialBackoff": "0.2s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": unary_methods(), "retryPolicy": policy}]})


@dataclasses.dataclass
class Connection:
    """Everything needed to open a channel and authorise calls."""

    target: str
    tls: bool
    metadata: tuple[tuple[str, str], ...]
    options: list[tuple[str, object]]
    credentials: grpc.ChannelCredentials | None
    #: PEM roots to trust and the name to check the certificate against (for the realtime
    #: WebSocket, which does not go through gRPC's credentials).
    ca_cert: bytes | None = None
    tls_server_name: str | None = None

    @classmethod
    def build(
        cls,
        target: str | None,
        *,
        tls: bool | None,
        api_key: str | None,
        token: str | None,
        retries: int,
        ca_cert: str | pathlib.Path | bytes | None,
        tls_server_name: str | None,
        keepalive_s: float,
        metadata: dict[str, str] | list[tuple[str, str]] | None,
        options: list[tuple[str, object]] | None,
    ) -> Connection:
        target = (target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET).strip()
        scheme, sep, rest = target.partition("://")
        if sep:
            if scheme not in ("http", "https", "grpc", "grpcs"):
                raise ValueError(f"target {target!r}: use host:port, http:// or https://")
            target = rest.rstrip("/")
            if tls is None:
                tls = scheme in ("https", "grpcs")
        tls = bool(tls) or ca_cert is not None
        if ":" not in target.rsplit("]", 1)[-1]:
            target += ":443" if tls else ":8080"
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        pairs = list(metadata.items()) if isinstance(metadata, dict) else list(metadata or [])
        if api_key:
            pairs.append(("x-api-key", api_key))
        if token:
            pairs.append(("authorization", f"Bearer {token}"))
        channel_options: list[tuple[str, object]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", 20000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_retries", 1 if retries > 0 else 0),
            ("grpc.service_config", service_config(retries)),
            ("grpc.primary_user_agent", "speechmesh-python"),
        ]
        if tls_server_name:
            channel_options.append(("grpc.ssl_target_name_override", tls_server_name))
        channel_options += list(options or [])
        credentials = None
        roots = ca_cert
        if isinstance(roots, (str, pathlib.Path)):
            roots = pathlib.Path(roots).read_bytes()
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return cls(target, tls, tuple(pairs), channel_options, credentials, roots, tls_server_name)

    def sync_channel(self) -> grpc.Channel:
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials, options=self.options)
        return grpc.insecure_channel(self.target, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is not None:
            return grpc.aio.secure_channel(self.target, self.credentials, options=self.options)
        return grpc.aio.insecure_channel(self.target, options=self.options)
