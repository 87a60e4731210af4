"""TTS settings: SPEECHMESH_TTS_* environment variables, or `speechmesh serve tts` flags."""

from __future__ import annotations

from pydantic import Field

from speechmesh.runtime.settings import extra_models_field, model_service_settings

DEFAULT_MODEL = "sesame/csm-1b"
MODEL_IS = "Default model: a CSM checkpoint (voice cloning) or a VITS/MMS-TTS one (preset voices)"


class TtsSettings(model_service_settings("tts", DEFAULT_MODEL, MODEL_IS)):
    extra_models: str = extra_models_field("facebook/mms-tts-eng")
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
