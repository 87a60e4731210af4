"""The ASR models a service holds (engine, batcher and recognizer per model) and the VAD they
share, on the generic model registry."""

from __future__ import annotations

import asyncio
import pathlib

import structlog

from speechmesh.asr.config import AsrSettings
from speechmesh.asr.engines.base import AsrEngine
from speechmesh.asr.engines.loader import load_engine
from speechmesh.asr.recognizer import Recognizer
from speechmesh.dsp.endpointing import VadBatcher
from speechmesh.dsp.vad import SileroVad
from speechmesh.inference.registry import ModelRegistry, ServedModel

log = structlog.get_logger("speechmesh.asr")


class AsrModel(ServedModel[AsrEngine]):
    recognizer: Recognizer | None = None


class AsrModels(ModelRegistry[AsrModel]):
    """Loads the configured models (Whisper and SenseVoice side by side) and the VAD at
    start-up, loads and unloads models at run time, and hands them to requests."""

    settings: AsrSettings

    def __init__(self, settings: AsrSettings):
        super().__init__(
            settings,
            AsrModel(settings.model, "SPEECHMESH_ASR_MODEL"),
            log,
            idle_unload_s=settings.model_idle_unload_seconds,
            memory_limit_bytes=settings.model_memory_limit_mb * 1024 * 1024,
        )
        self.memory_limit_setting = "SPEECHMESH_ASR_MODEL_MEMORY_LIMIT_MB"
        for setting in filter(None, (n.strip() for n in settings.extra_models.split(","))):
            self.add(AsrModel(setting, "SPEECHMESH_ASR_EXTRA_MODELS", "--extra-models"))
        self.vad: VadBatcher | None = None

    def new_model(self, name: str, source: str) -> AsrModel:
        return AsrModel(f"{name}={source}", "LoadModelRequest.source", "source")

    async def load(self) -> None:
        self.vad = VadBatcher(await asyncio.to_thread(SileroVad.load))
        await super().load()

    def open_engine(self, model: AsrModel, path: pathlib.Path) -> AsrEngine:
        return load_engine(model.name, path, self.settings)

    def serve(self, model: AsrModel, engine: AsrEngine) -> None:
        assert self.vad is not None
        model.batcher = self.batcher(
            model,
            engine.decode_batch,
            key=lambda job: job.options.batch_key(),
            workers=getattr(engine, "workers", 1),
        )
        model.recognizer = Recognizer(
            engine, model.batcher, self.vad.vad, max_audio_seconds=self.settings.max_audio_seconds
        )

    def unserve(self, model: AsrModel) -> None:
        model.recognizer = None

    async def close(self) -> None:
        await super().close()
        if self.vad is not None:
            await self.vad.close()
