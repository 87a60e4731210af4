"""The synthesis models a service holds (engine and batcher each), and the voice store.

The engine is chosen by the checkpoint's `config.json` `model_type` (CSM clones voices; VITS /
MMS-TTS speaks preset voices). Requests pick a model by name; without one, a stored voice's own
model, else the default when it can do what is asked, else the first model that can.
"""

from __future__ import annotations

import asyncio
import pathlib

import structlog

from speechmesh.inference.batcher import MicroBatcher
from speechmesh.inference.registry import ModelRegistry, ServedModel
from speechmesh.runtime import errors
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.engines.base import SynthesisEngine, SynthesisJob
from speechmesh.tts.engines.loader import load_engine
from speechmesh.tts.voices.store import VoiceStore

log = structlog.get_logger("speechmesh.tts")


class TtsModel(ServedModel[SynthesisEngine]):
    batcher: MicroBatcher[SynthesisJob, object] | None

    @property
    def can_clone(self) -> bool:
        return self.engine is not None and self.engine.supports_cloning


class TtsModels(ModelRegistry[TtsModel]):
    """Loads the configured models and opens the voice store at start-up."""

    settings: TtsSettings

    def __init__(self, settings: TtsSettings):
        super().__init__(settings, TtsModel(settings.model, "SPEECHMESH_TTS_MODEL"), log)
        for name in filter(None, (n.strip() for n in settings.extra_models.split(","))):
            self.add(TtsModel(name, "SPEECHMESH_TTS_EXTRA_MODELS", "--extra-models"))
        self.voices: VoiceStore | None = None

    async def load(self) -> None:
        self.voices = await asyncio.to_thread(VoiceStore, self.settings.voices_dir or None)
        log.info("voices.opened", root=str(self.voices.root), voices=len(self.voices))
        await super().load()

    def open_engine(self, model: TtsModel, path: pathlib.Path) -> SynthesisEngine:
        return load_engine(path, model.name, self.settings.device, self.settings.dtype)

    def serve(self, model: TtsModel, engine: SynthesisEngine) -> None:
        model.batcher = self.batcher(model, engine.run_batch, key=engine.batch_key)

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
        for model in self.ready():
            if model.can_clone:
                return model
        raise errors.invalid_argument(field, f"no model here clones voices; {self._cloners()}")

    def _cloners(self) -> str:
        able = [m.name for m in self.models.values() if m.can_clone]
        if able:
            return f"use {' or '.join(repr(n) for n in able)} (ListModels lists them)"
        return "serve a CSM model (SPEECHMESH_TTS_MODEL) to clone voices"
