"""The services of the suite, in one table: what `speechmesh serve`, `speechmesh up`, the health
check, the gateway and the client all read.

Nothing here imports a service's code: settings classes and app factories are named as
"module:attribute" and imported when asked for, so listing the services never pulls in torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

#: Request header that picks the service answering health checks and reflection through the
#: gateway (those gRPC services are the same in every service, so the path cannot route them).
SERVICE_HEADER = "x-speechmesh-service"


def load(spec: str) -> Any:
    """The attribute named by "package.module:attribute"."""
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """One service: its short name, ports, proto service, settings and app factory."""

    name: str  # short name: the CLI argument, the env prefix, the gateway's routing header
    port: int  # default gRPC port
    metrics_port: int  # default Prometheus port
    proto_service: str  # full name of its gRPC service, e.g. speechmesh.asr.v1.AsrService
    settings: str  # "module:SettingsClass"
    app: str  # "module:build_app"
    websocket_port: int = 0  # default realtime WebSocket port; 0: the service has none

    @property
    def env_prefix(self) -> str:
        return f"SPEECHMESH_{self.name.upper()}_"

    def settings_class(self) -> type:
        return load(self.settings)

    def build_app(self) -> Any:
        return load(self.app)


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            "asr",
            50051,
            9151,
            "speechmesh.asr.v1.AsrService",
            "speechmesh.asr.config:AsrSettings",
            "speechmesh.asr.app:build_app",
            50061,
        ),
        ServiceSpec(
            "translate",
            50052,
            9152,
            "speechmesh.translate.v1.TranslateService",
            "speechmesh.translate.config:TranslateSettings",
            "speechmesh.translate.app:build_app",
        ),
        ServiceSpec(
            "tts",
            50053,
            9153,
            "speechmesh.tts.v1.TtsService",
            "speechmesh.tts.config:TtsSettings",
            "speechmesh.tts.app:build_app",
            50063,
        ),
    )
}
