"""The translation models a service holds: engine, batcher and translator per model, and state.

The engine is chosen by the checkpoint's `config.json` `model_type`: SeamlessM4T v2 serves the
four tasks; NLLB, M2M100 and Marian serve text to text. Requests pick a model by name, or the
default when it can do the task, or the first model that can (`for_task`).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Iterable

import structlog

from speechmesh.dsp.endpointing import VadBatcher
from speechmesh.dsp.vad import SileroVad
from speechmesh.inference.devices import resolve_device, resolve_dtype
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
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.engines.base import Task, TranslationEngine
from speechmesh.translate.translator import Limits, Translator

log = structlog.get_logger("speechmesh.translate")

#: config.json model_type -> engine family that runs it.
SEAMLESS_TYPES = frozenset({"seamless_m4t_v2"})
SEQ2SEQ_TYPES = frozenset({"m2m_100", "marian"})
_TASK_NAMES = {
    "t2tt": "text-to-text",
    "s2tt": "speech-to-text",
    "t2st": "text-to-speech",
    "s2st": "speech-to-speech",
}


def model_type(path: pathlib.Path) -> str:
    try:
        return str(json.loads((path / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path / 'config.json'} cannot be read: {error}") from None


class TranslateModel:
    def __init__(self, name: str, env_var: str, settings: TranslateSettings):
        self.name, self.source = model_spec(name)
        self.env_var = env_var
        self.settings = settings
        self.state = ModelState.LOADING
        self.error = ""
        self.engine: TranslationEngine | None = None
        self.translator: Translator | None = None

    def load_engine(self) -> TranslationEngine:
        """Blocking: resolves, loads and warms up the weights."""
        flag = "--text-model" if self.env_var.endswith("TEXT_MODEL") else "--model"
        path = resolve_model(self.source, self.env_var, flag)
        kind = model_type(path)
        device = resolve_device(self.settings.device)
        dtype = resolve_dtype(self.settings.dtype, device)
        if kind in SEAMLESS_TYPES:
            from speechmesh.translate.engines.seamless import SeamlessEngine

            engine: TranslationEngine = SeamlessEngine(self.name, path, device, dtype)
        elif kind in SEQ2SEQ_TYPES:
            from speechmesh.translate.engines.seq2seq import Seq2SeqEngine

            engine = Seq2SeqEngine(self.name, path, device, dtype)
        else:
            raise ValueError(
                f"model {self.name} is a {kind or 'unknown'!r} checkpoint (config.json"
                f" model_type); the translate service runs SeamlessM4T v2 (seamless_m4t_v2) and"
                f" NLLB, M2M100 or Marian (m2m_100, marian) checkpoints: set {self.env_var}"
                f" (or {flag}) to one"
            )
        if self.settings.warmup:
            engine.warmup()
        return engine

    def can(self, task: Task) -> bool:
        return self.engine is not None and task in self.engine.tasks


class TranslateModels:
    """Loads the configured models at start-up and hands them to requests."""

    def __init__(self, settings: TranslateSettings):
        self.settings = settings
        self.default = TranslateModel(settings.model, "SPEECHMESH_TRANSLATE_MODEL", settings)
        self.models = {self.default.name: self.default}
        if settings.text_model and settings.text_model != settings.model:
            text = TranslateModel(settings.text_model, "SPEECHMESH_TRANSLATE_TEXT_MODEL", settings)
            add_model(self.models, text)
        self.vad: SileroVad | None = None
        #: Steps VAD for every open stream in shared forward passes.
        self.stream_vad: VadBatcher | None = None

    async def load(self) -> None:
        s = self.settings
        limits = Limits(
            max_texts=s.max_texts,
            max_text_characters=s.max_text_characters,
            max_speech_text_characters=s.max_speech_text_characters,
            max_audio_seconds=s.max_audio_seconds,
        )
        self.vad = await asyncio.to_thread(SileroVad.load)
        self.stream_vad = VadBatcher(self.vad)
        for model in self.models.values():
            try:
                engine = await asyncio.to_thread(model.load_engine)
            except Exception as error:
                model.state, model.error = ModelState.FAILED, str(error)
                raise
            batcher = model_batcher(
                model.name, engine.run_batch, s, key=lambda job: job.batch_key()
            )
            model.engine = engine
            model.translator = Translator(engine, batcher, self.vad, limits)
            model.state = ModelState.READY
            log_ready(log, model.name, engine)

    def get(self, name: str) -> TranslateModel:
        """The named model (empty: the default), ready to serve, or an ApiError."""
        return ready_model(self.models, self.default, name)

    def for_task(
        self, name: str, tasks: Task | Iterable[Task], field: str = "model"
    ) -> TranslateModel:
        """The model for `tasks`: the named one, else the default when capable, else the first
        capable one. A model that cannot is INVALID_ARGUMENT naming `field`, saying which can."""
        wanted: list[Task] = [tasks] if isinstance(tasks, str) else list(dict.fromkeys(tasks))
        if name:
            model = self.get(name)
            if all(model.can(task) for task in wanted):
                return model
            raise errors.invalid_argument(field, self._cannot(model.name, wanted))
        default = self.get("")
        if all(default.can(task) for task in wanted):
            return default
        for model in self.models.values():
            if model.state is ModelState.READY and all(model.can(task) for task in wanted):
                return model
        raise errors.invalid_argument(field, self._cannot("", wanted))

    def _cannot(self, name: str, tasks: list[Task]) -> str:
        what = " and ".join(_TASK_NAMES[task] for task in tasks)
        able = [
            m.name
            for m in self.models.values()
            if m.state is ModelState.READY and all(m.can(task) for task in tasks)
        ]
        who = f"model {name} cannot translate {what}" if name else f"no model here does {what}"
        if able:
            return f"{who}; use {' or '.join(repr(n) for n in able)} (ListModels lists them)"
        return f"{who}; ListModels lists what each model does"

    async def close(self) -> None:
        if self.stream_vad is not None:
            await self.stream_vad.close()
        for model in self.models.values():
            if model.translator is not None:
                await model.translator.batcher.close()
