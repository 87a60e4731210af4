"""TTS settings: SPEECHMESH_TTS_* environment variables, or `speechmesh serve tts` flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from speechmesh.runtime.registry import SERVICES
from speechmesh.runtime.settings import ServiceSettings

DEFAULT_MODEL = "sesame/csm-1b"


class TtsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECHMESH_TTS_", extra="ignore")

    port: int = Field(SERVICES["tts"].port, ge=0, le=65535)
    metrics_port: int = Field(SERVICES["tts"].metrics_port, ge=0, le=65535)
    model: str = Field(
        DEFAULT_MODEL,
        description="Default model: a CSM checkpoint (voice cloning) or a VITS/MMS-TTS one"
        " (preset voices); Hugging Face id or folder;"
        " `ID=SOURCE` serves it as ID, else its id is the last part of the source.",
    )
    extra_models: str = Field(
        "",
        description="More models served beside the default, comma-separated ids or folders"
        " (e.g. facebook/mms-tts-eng, or mms=facebook/mms-tts-eng to name it); empty: none.",
    )
    voices_dir: str = Field(
        "",
        description="Where stored voices live; empty: $XDG_DATA_HOME/speechmesh/voices (or"
        " ~/.local/share/speechmesh/voices).",
    )
    max_text_characters: int = Field(
        5000, ge=1, le=100_000, description="Most characters per Synthesize call or text piece."
    )
    min_reference_seconds: float = Field(
        3.0, gt=0, description="Shortest reference recording (its sound, without silences)."
    )
    max_reference_seconds: float = Field(30.0, gt=0, description="Longest reference recording.")
    sentence_pause_ms: int = Field(
        250, ge=0, le=5000, description="Silence between sentences of one text, ms."
    )
    max_queue: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Queued sentences before RESOURCE_EXHAUSTED; one call queues every"
        " sentence of its text.",
    )
