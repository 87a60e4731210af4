"""ASR settings: SPEECHMESH_ASR_* environment variables, or `speechmesh serve asr` flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from speechmesh.runtime.settings import extra_models_field, model_service_settings

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


MODEL_IS = "Default model: a Whisper or SenseVoice checkpoint"


class AsrSettings(model_service_settings("asr", DEFAULT_MODEL, MODEL_IS)):
    extra_models: str = extra_models_field("FunAudioLLM/SenseVoiceSmall")
    model_idle_unload_seconds: float = Field(
        0,
        ge=0,
        description="Unload a model other than the default after this many seconds unused"
        " (the next request that names it loads it again and waits); 0: keep every model loaded.",
    )
    model_memory_limit_mb: int = Field(
        0,
        ge=0,
        description="Most MiB of model weights the service holds at once; a load past it fails"
        " (RESOURCE_EXHAUSTED) and the loaded models keep serving. 0: only the device's free"
        " memory limits it.",
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
