"""Settings every service shares, from SPEECHMESH_* environment variables and flags.

Each model-serving service subclasses `model_service_settings(NAME, ...)`: ServiceSettings with
its env prefix (SPEECHMESH_<NAME>_) and ports from the service registry and its default model,
plus the settings of its own. Values are validated when the settings object is built, so a bad
value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from speechmesh.inference.batcher import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_WAIT_MS,
)
from speechmesh.operations.settings import JobsSettings
from speechmesh.runtime import identity
from speechmesh.runtime.peers import parse_peers
from speechmesh.runtime.registry import SERVICES

MiB = 1024 * 1024


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECHMESH_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(
        9151, ge=0, le=65535, description="Prometheus /metrics port; 0 picks a free one."
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float32 on CPU, float16 on GPU."
    )
    max_batch_size: int = Field(
        DEFAULT_MAX_BATCH_SIZE, ge=1, le=256, description="Most requests in one forward pass."
    )
    max_batch_wait_ms: float = Field(
        DEFAULT_MAX_WAIT_MS,
        ge=0,
        le=1000,
        description="How long an idle model waits for as many jobs as its last batch had.",
    )
    max_queue: int = Field(
        DEFAULT_MAX_QUEUE,
        ge=1,
        le=100_000,
        description="Queued decode jobs before RESOURCE_EXHAUSTED.",
    )
    max_message_mb: int = Field(64, ge=1, le=2047, description="Largest gRPC message, MiB.")
    max_websocket_message_kb: int = Field(
        1024,
        ge=16,
        le=65536,
        description="Largest WebSocket message a realtime session accepts, KiB; a larger one"
        " closes the connection (1009).",
    )
    max_streams: int = Field(256, ge=1, description="Concurrent streams before RESOURCE_EXHAUSTED.")
    grace_period_s: float = Field(
        30.0, ge=0, description="On SIGTERM, time in-flight calls get to finish."
    )
    keepalive_time_s: float = Field(30.0, gt=0, description="Server keepalive ping interval.")
    keepalive_timeout_s: float = Field(10.0, gt=0, description="Keepalive ping ack timeout.")
    peers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="The other services this one calls, NAME=HOST:PORT pairs separated by commas"
        " (e.g. translate=translate:50052,tts=tts:50053); empty: none.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    warmup: bool = Field(True, description="Run one inference before reporting SERVING.")
    # The gateway's two identity settings, read by every service from the gateway's own
    # variables so that the header the gateway writes is always the one the services read.
    identity_header: str = Field(
        identity.DEFAULT_HEADER,
        validation_alias=AliasChoices(identity.HEADER_ENV),
        description="Header the gateway puts the authenticated caller in (the gateway's setting).",
    )
    gateway_auth: Literal["none", "api_key", "jwt"] = Field(
        "none",
        validation_alias=AliasChoices(identity.AUTH_ENV),
        description="The gateway's auth: when on, calls without an identity are refused.",
    )
    # Read by every service from one variable, like the identity settings above.
    operators: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices(identity.OPERATORS_ENV),
        description="Caller identities (as the gateway sets them) allowed to call the admin"
        " RPCs (LoadModel, UnloadModel), comma-separated; empty: nobody.",
    )
    # Which hops may send the identity header (speechmesh.runtime.identity), read by every
    # service (and the hop token by the gateway) from these shared variables.
    trusted_hops: Literal["any", "token", "mesh"] = Field(
        "any",
        validation_alias=AliasChoices(identity.TRUSTED_HOPS_ENV),
        description="Whose identity header to believe: any caller, calls with the hop token"
        " (token), or calls from a mesh peer listed in trusted_spiffe_ids (mesh).",
    )
    hop_token_file: str = Field(
        "",
        validation_alias=AliasChoices(identity.HOP_TOKEN_FILE_ENV),
        description="token: the file holding the hop token the gateway and the services share.",
    )
    hop_token: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices(identity.HOP_TOKEN_ENV),
        description="token: the hop token itself, when no file is given.",
    )
    trusted_spiffe_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices(identity.TRUSTED_SPIFFE_IDS_ENV),
        description="mesh: SPIFFE ids (the mesh's mTLS peer in x-forwarded-client-cert) whose"
        " calls may carry an identity, comma-separated.",
    )

    # Long-running jobs: SPEECHMESH_JOBS_* variables, the same for every service.
    jobs: JobsSettings = Field(
        default_factory=JobsSettings, description="Job store and workers (SPEECHMESH_JOBS_*)."
    )

    @field_validator("identity_header")
    @classmethod
    def _identity_header(cls, value: str) -> str:
        return identity.header_name(value)

    @field_validator("operators", mode="before")
    @classmethod
    def _operators(cls, value: object) -> list[str]:
        if isinstance(value, str):
            value = value.split(",")
        return [str(v).strip() for v in value or () if str(v).strip()]

    @field_validator("trusted_spiffe_ids", mode="before")
    @classmethod
    def _spiffe_ids(cls, value: object) -> list[str]:
        return identity.spiffe_ids(value)

    @model_validator(mode="after")
    def _hops(self) -> ServiceSettings:
        if self.trusted_hops == "token":
            # Read once here so a missing or bad token stops start-up, naming the variable.
            identity.hop_token(self.hop_token_file, self.hop_token.get_secret_value())
        if self.trusted_hops == "mesh" and not self.trusted_spiffe_ids:
            raise ValueError(
                f"{identity.TRUSTED_HOPS_ENV}=mesh needs {identity.TRUSTED_SPIFFE_IDS_ENV} (the"
                " gateway's and the translate service's SPIFFE ids)"
            )
        return self

    @field_validator("peers", mode="before")
    @classmethod
    def _peers(cls, value: object) -> dict[str, str]:
        return parse_peers(value)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value

    @property
    def max_websocket_message_bytes(self) -> int:
        return self.max_websocket_message_kb * 1024

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * MiB


#: What every model setting accepts, after the service's own words on what the model is.
MODEL_SOURCE_HELP = (
    "Hugging Face id or folder; `ID=SOURCE` serves it as ID, else its id is the last part of"
    " the source."
)


def extra_models_field(example: str) -> Any:
    """The `extra_models` setting of a service that serves several models (`example`: one
    source to show in the description)."""
    return Field(
        "",
        description="More models served beside the default, comma-separated ids or folders"
        f" (e.g. {example}, or NAME={example} to name it); empty: none.",
    )


def model_service_settings(
    service: str, default_model: str, model_is: str
) -> type[ServiceSettings]:
    """The settings a model-serving service starts from: ServiceSettings read from
    SPEECHMESH_<SERVICE>_* variables, with the service's ports (runtime.registry.SERVICES) and a
    `model` setting defaulting to `default_model`, described as `model_is`."""
    spec = SERVICES[service]

    class ModelServiceSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix=spec.env_prefix, extra="ignore")

        port: int = Field(spec.port, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
        metrics_port: int = Field(
            spec.metrics_port,
            ge=0,
            le=65535,
            description="Prometheus /metrics port; 0 picks a free one.",
        )
        model: str = Field(default_model, description=f"{model_is}; {MODEL_SOURCE_HELP}")
        if spec.websocket_port:  # a service with realtime sessions (asr, tts)
            websocket_port: int = Field(
                spec.websocket_port,
                ge=0,
                le=65535,
                description="Realtime WebSocket port; 0 picks a free one.",
            )

    return ModelServiceSettings
