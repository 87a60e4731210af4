"""Translate settings: SPEECHMESH_TRANSLATE_* environment variables, or `speechmesh serve
translate` flags."""

from __future__ import annotations

from pydantic import Field

from speechmesh.runtime.settings import model_service_settings

DEFAULT_MODEL = "facebook/seamless-m4t-v2-large"
MODEL_IS = (
    "Default model: a SeamlessM4T v2 (all four tasks) or a text seq2seq checkpoint (NLLB,"
    " M2M100, Marian)"
)


class TranslateSettings(model_service_settings("translate", DEFAULT_MODEL, MODEL_IS)):
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
    beams: int = Field(
        5,
        ge=1,
        le=16,
        description="Beam width of SeamlessM4T v2's text decoding (5: its reference translator;"
        " 1: greedy, the fastest). Each beam adds decoder work.",
    )
