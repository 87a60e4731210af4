"""Jobs settings: SPEECHMESH_JOBS_* variables, the same for every service (one store may serve
them all, and every replica of a service must agree on it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


def default_database_url() -> str:
    """SQLite in the speechmesh cache folder ($XDG_CACHE_HOME/speechmesh or ~/.cache/...)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speechmesh"
    return f"sqlite:///{cache / 'jobs.sqlite3'}"


class JobsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECHMESH_JOBS_", extra="ignore")

    database_url: str = Field(
        default_factory=default_database_url,
        description="Job store: sqlite:///PATH (one file, the default, in the speechmesh cache)"
        " or postgresql://USER:PASSWORD@HOST/DB (replicas sharing the work).",
    )
    concurrency: int = Field(
        2, ge=0, le=64, description="Jobs this replica runs at once; 0: it takes no jobs."
    )
    max_queued: int = Field(
        1000, ge=1, description="Jobs queued or running per service before RESOURCE_EXHAUSTED."
    )
    lease_s: float = Field(
        30.0,
        ge=1.0,
        le=3600,
        description="A worker's hold on a job, renewed while it works; a dead worker's jobs"
        " are taken over this long after its last renewal.",
    )
    poll_interval_s: float = Field(
        0.5, gt=0, le=60, description="How often an idle worker looks for new jobs."
    )
    retention_hours: float = Field(
        168.0, gt=0, description="How long finished jobs and their results are kept."
    )
    file_root: str = Field(
        "", description="Folder `file://` inputs must be under; empty: no file inputs."
    )
    allowed_url_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts jobs may fetch http(s) inputs from, comma-separated; empty: none.",
    )
    upload_max_mb: int = Field(2048, ge=1, description="Largest upload, MiB.")
    upload_ttl_hours: float = Field(24.0, gt=0, description="How long an upload is kept.")

    @field_validator("allowed_url_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> list[str]:
        if isinstance(value, str):
            value = value.split(",")
        return [str(host).strip().lower() for host in value or () if str(host).strip()]

    @field_validator("file_root")
    @classmethod
    def _root(cls, value: str) -> str:
        if value and not Path(value).is_absolute():
            raise ValueError("must be an absolute folder")
        return value

    @property
    def upload_max_bytes(self) -> int:
        return self.upload_max_mb * MiB

    @property
    def retention_s(self) -> float:
        return self.retention_hours * 3600

    @property
    def upload_ttl_s(self) -> float:
        return self.upload_ttl_hours * 3600
