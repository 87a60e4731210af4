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
    """Loads the configured model and the VAD at start-up and hands them to requests."""

    settings: AsrSettings

    def __init__(self, settings: AsrSettings):
        super().__init__(settings, AsrModel(settings.model, "SPEECHMESH_ASR_MODEL"), log)
        self.vad: VadBatcher | None = None

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

    async def close(self) -> None:
        await super().close()
        if self.vad is not None:
            await self.vad.close()
