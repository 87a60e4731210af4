"""The ASR models a service holds: engine, batcher and recognizer per model, and their state."""

from __future__ import annotations

import asyncio

import structlog

from speechmesh.asr.config import AsrSettings
from speechmesh.asr.engines.base import AsrEngine
from speechmesh.asr.engines.loader import load_engine
from speechmesh.asr.recognizer import Recognizer
from speechmesh.dsp.endpointing import VadBatcher
from speechmesh.dsp.vad import SileroVad
from speechmesh.inference.model_source import resolve_model
from speechmesh.inference.model_state import (
    ModelState,
    log_ready,
    model_batcher,
    model_spec,
    ready_model,
)

log = structlog.get_logger("speechmesh.asr")


class AsrModel:
    def __init__(self, name: str, settings: AsrSettings):
        self.name, self.source = model_spec(name)
        self.settings = settings
        self.state = ModelState.LOADING
        self.error = ""
        self.engine: AsrEngine | None = None
        self.recognizer: Recognizer | None = None

    def load_engine(self) -> AsrEngine:
        """Blocking: resolves, loads and warms up the weights."""
        path = resolve_model(self.source, "SPEECHMESH_ASR_MODEL")
        engine = load_engine(self.name, path, self.settings)
        if self.settings.warmup:
            engine.warmup()
        return engine


class AsrModels:
    """Loads the configured model at start-up and hands it to requests."""

    def __init__(self, settings: AsrSettings):
        self.settings = settings
        self.default = AsrModel(settings.model, settings)
        self.models = {self.default.name: self.default}
        self.vad: VadBatcher | None = None

    async def load(self) -> None:
        self.vad = VadBatcher(await asyncio.to_thread(SileroVad.load))
        for model in self.models.values():
            try:
                engine = await asyncio.to_thread(model.load_engine)
            except Exception as error:
                model.state, model.error = ModelState.FAILED, str(error)
                raise
            s = self.settings
            batcher = model_batcher(
                model.name,
                engine.decode_batch,
                s,
                key=lambda job: job.options.batch_key(),
                workers=getattr(engine, "workers", 1),
            )
            model.engine = engine
            model.recognizer = Recognizer(
                engine, batcher, self.vad.vad, max_audio_seconds=s.max_audio_seconds
            )
            model.state = ModelState.READY
            log_ready(log, model.name, engine)

    def get(self, name: str) -> AsrModel:
        """The named model (empty: the default), ready to serve, or an ApiError."""
        return ready_model(self.models, self.default, name)

    async def close(self) -> None:
        for model in self.models.values():
            if model.recognizer is not None:
                await model.recognizer.batcher.close()
        if self.vad is not None:
            await self.vad.close()
