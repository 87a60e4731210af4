"""Translate settings: SPEECHMESH_TRANSLATE_* environment variables, or `speechmesh serve
translate` flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from speechmesh.runtime.registry import SERVICES
from speechmesh.runtime.settings import ServiceSettings

DEFAULT_MODEL = "facebook/seamless-m4t-v2-large"


class TranslateSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECHMESH_TRANSLATE_", extra="ignore")

    port: int = Field(SERVICES["translate"].port, ge=0, le=65535)
    metrics_port: int = Field(SERVICES["translate"].metrics_port, ge=0, le=65535)
    model: str = Field(
        DEFAULT_MODEL,
        description="Default model: a SeamlessM4T v2 (all four tasks) or a text seq2seq"
        " checkpoint (NLLB, M2M100, Marian); Hugging Face id or folder;"
        " `ID=SOURCE` serves it as ID, else its id is the last part of the source.",
    )
    text_model: str = Field(
        "",
        description="Optional second, lighter text-to-text model (NLLB, M2M100, Marian),"
        " e.g. facebook/nllb-200-distilled-600M (`ID=SOURCE` to name it); empty: none.",
    )
    max_queue: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Queued jobs (sentences, speech segments) before RESOURCE_EXHAUSTED; one call"
        " can queue up to max_texts sentences.",
    )
    max_texts: int = Field(128, ge=1, le=10_000, description="Most texts per TranslateText call.")
    max_text_characters: int = Field(
        100_000, ge=1, description="Most characters (code points) per TranslateText call, in all."
    )
    max_speech_text_characters: int = Field(
        10_000, ge=1, description="Most characters per text-to-speech call."
    )
    max_audio_seconds: float = Field(
        2 * 3600, gt=0, description="Longest recording a speech translation call accepts, in s."
    )
