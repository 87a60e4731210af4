"""ASR settings: SPEECHMESH_ASR_* environment variables, or `speechmesh serve asr` flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from speechmesh.common.settings import ServiceSettings

DEFAULT_MODEL = "openai/whisper-large-v3-turbo"


class AsrSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECHMESH_ASR_", extra="ignore")

    port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9151, ge=0, le=65535)
    model: str = Field(DEFAULT_MODEL, description="Whisper checkpoint: Hugging Face id or folder.")
    max_audio_seconds: float = Field(
        4 * 3600, gt=0, description="Longest recording Recognize accepts, in seconds."
    )
