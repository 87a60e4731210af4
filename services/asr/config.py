"""ASR settings: SPEECHMESH_ASR_* environment variables, or `speechmesh serve asr` flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from speechmesh.runtime.registry import SERVICES
from speechmesh.runtime.settings import ServiceSettings

DEFAULT_MODEL = "openai/whisper-large-v3-turbo"
COMPUTE_TYPES = (
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


class AsrSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECHMESH_ASR_", extra="ignore")

    port: int = Field(SERVICES["asr"].port, ge=0, le=65535)
    metrics_port: int = Field(SERVICES["asr"].metrics_port, ge=0, le=65535)
    model: str = Field(
        DEFAULT_MODEL,
        description="Whisper checkpoint: Hugging Face id or folder;"
        " `ID=SOURCE` serves it as ID, else its id is the last part of the source.",
    )
    max_audio_seconds: float = Field(
        4 * 3600, gt=0, description="Longest recording Recognize accepts, in seconds."
    )
    engine: Literal["auto", "ctranslate2", "transformers"] = Field(
        "auto",
        description="Inference runtime: ctranslate2, transformers, or auto (CTranslate2 when"
        " it can convert the checkpoint, else transformers).",
    )
    compute_type: Literal[COMPUTE_TYPES] = Field(  # type: ignore[valid-type]
        "auto",
        description="CTranslate2 compute type; auto: int8 on CPU, float16 on GPU.",
    )
    workers: int = Field(
        0,
        ge=0,
        le=16,
        description="Batches decoded side by side (CTranslate2); 0: 2 on a CPU, 1 on a GPU.",
    )
    threads: int = Field(
        0, ge=0, le=256, description="CPU threads per batch (CTranslate2); 0: every core."
    )
    packing: bool = Field(
        True,
        description="Decode short clips of one batch in shared 30 s windows (CTranslate2).",
    )
    cache_dir: str = Field(
        "",
        description="Where converted models are kept; empty: $XDG_CACHE_HOME/speechmesh"
        " or ~/.cache/speechmesh.",
    )
