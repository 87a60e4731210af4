"""The synthesis models a service holds (engine and batcher each), and the voice store.

The engine is chosen by the checkpoint's `config.json` `model_type` (CSM clones voices; VITS /
MMS-TTS speaks preset voices). Requests pick a model by name; without one, a stored voice's own
model, else the default when it can do what is asked, else the first model that can.
"""

from __future__ import annotations

import asyncio

import structlog

from speechmesh.inference.batcher import MicroBatcher
from speechmesh.inference.model_source import resolve_model
from speechmesh.inference.model_state import (
    ModelState,
    add_model,
    log_ready,
    model_batcher,
    model_spec,
    ready_model,
)
from speechmesh.runtime import errors
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.engines.base import SynthesisEngine, SynthesisJob
from speechmesh.tts.engines.loader import load_engine
from speechmesh.tts.voices.store import VoiceStore

log = structlog.get_logger("speechmesh.tts")


class TtsModel:
    def __init__(self, name: str, env_var: str, settings: TtsSettings):
        self.name, self.source = model_spec(name)
        self.env_var = env_var
        self.settings = settings
        self.state = ModelState.LOADING
        self.error = ""
        self.engine: SynthesisEngine | None = None
        self.batcher: MicroBatcher[SynthesisJob, object] | None = None

    def load_engine(self) -> SynthesisEngine:
        """Blocking: resolves, loads and warms up the weights."""
        flag = "--extra-models" if self.env_var.endswith("EXTRA_MODELS") else "--model"
        path = resolve_model(self.source, self.env_var, flag)
        engine = load_engine(path, self.name, self.settings.device, self.settings.dtype)
        if self.settings.warmup:
            engine.warmup()
        return engine

    @property
    def can_clone(self) -> bool:
        return self.engine is not None and self.engine.supports_cloning


class TtsModels:
    """Loads the configured models and opens the voice store at start-up."""

    def __init__(self, settings: TtsSettings):
        self.settings = settings
        self.default = TtsModel(settings.model, "SPEECHMESH_TTS_MODEL", settings)
        self.models = {self.default.name: self.default}
        for name in filter(None, (n.strip() for n in settings.extra_models.split(","))):
            add_model(self.models, TtsModel(name, "SPEECHMESH_TTS_EXTRA_MODELS", settings))
        self.voices: VoiceStore | None = None

    async def load(self) -> None:
        self.voices = await asyncio.to_thread(VoiceStore, self.settings.voices_dir or None)
        log.info("voices.opened", root=str(self.voices.root), voices=len(self.voices))
        s = self.settings
        for model in self.models.values():
            try:
                engine = await asyncio.to_thread(model.load_engine)
            except Exception as error:
                model.state, model.error = ModelState.FAILED, str(error)
                raise
            model.batcher = model_batcher(model.name, engine.run_batch, s, key=engine.batch_key)
            model.engine = engine
            model.state = ModelState.READY
            log_ready(log, model.name, engine)

    def get(self, name: str) -> TtsModel:
        """The named model (empty: the default), ready to serve, or an ApiError."""
        return ready_model(self.models, self.default, name)

    def cloning(self, name: str, field: str) -> TtsModel:
        """The model to clone a voice with: the named one if it can, else the default if it can,
        else the first that can; INVALID_ARGUMENT naming `field` when none can."""
        if name:
            model = self.get(name)
            if model.can_clone:
                return model
            raise errors.invalid_argument(
                field,
                f"model {name} cannot clone voices (it speaks preset voices only);"
                f" {self._cloners()}",
            )
        default = self.get("")
        if default.can_clone:
            return default
        for model in self.models.values():
            if model.state is ModelState.READY and model.can_clone:
                return model
        raise errors.invalid_argument(field, f"no model here clones voices; {self._cloners()}")

    def _cloners(self) -> str:
        able = [m.name for m in self.models.values() if m.can_clone]
        if able:
            return f"use {' or '.join(repr(n) for n in able)} (ListModels lists them)"
        return "serve a CSM model (SPEECHMESH_TTS_MODEL) to clone voices"

    async def close(self) -> None:
        for model in self.models.values():
            if model.batcher is not None:
                await model.batcher.close()
