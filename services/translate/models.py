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
from speechmesh.inference.registry import ModelRegistry, ServedModel
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


class TranslateModel(ServedModel[TranslationEngine]):
    translator: Translator | None = None

    def can(self, task: Task) -> bool:
        return self.engine is not None and task in self.engine.tasks


class TranslateModels(ModelRegistry[TranslateModel]):
    """Loads the configured models and the VAD at start-up and hands them to requests."""

    settings: TranslateSettings

    def __init__(self, settings: TranslateSettings):
        super().__init__(
            settings, TranslateModel(settings.model, "SPEECHMESH_TRANSLATE_MODEL"), log
        )
        if settings.text_model and settings.text_model != settings.model:
            self.add(
                TranslateModel(
                    settings.text_model, "SPEECHMESH_TRANSLATE_TEXT_MODEL", "--text-model"
                )
            )
        self.limits = Limits(
            max_texts=settings.max_texts,
            max_text_characters=settings.max_text_characters,
            max_speech_text_characters=settings.max_speech_text_characters,
            max_audio_seconds=settings.max_audio_seconds,
        )
        self.vad: SileroVad | None = None
        #: Steps VAD for every open stream in shared forward passes.
        self.stream_vad: VadBatcher | None = None

    async def load(self) -> None:
        self.vad = await asyncio.to_thread(SileroVad.load)
        self.stream_vad = VadBatcher(self.vad)
        await super().load()

    def open_engine(self, model: TranslateModel, path: pathlib.Path) -> TranslationEngine:
        kind = model_type(path)
        device = resolve_device(self.settings.device)
        dtype = resolve_dtype(self.settings.dtype, device)
        if kind in SEAMLESS_TYPES:
            from speechmesh.translate.engines.seamless import SeamlessEngine

            return SeamlessEngine(model.name, path, device, dtype, num_beams=self.settings.beams)
        if kind in SEQ2SEQ_TYPES:
            from speechmesh.translate.engines.seq2seq import Seq2SeqEngine

            return Seq2SeqEngine(model.name, path, device, dtype)
        raise ValueError(
            f"model {model.name} is a {kind or 'unknown'!r} checkpoint (config.json"
            f" model_type); the translate service runs SeamlessM4T v2 (seamless_m4t_v2) and"
            f" NLLB, M2M100 or Marian (m2m_100, marian) checkpoints: set {model.env_var}"
            f" (or {model.flag}) to one"
        )

    def serve(self, model: TranslateModel, engine: TranslationEngine) -> None:
        model.batcher = self.batcher(model, engine.run_batch, key=lambda job: job.batch_key())
        model.translator = Translator(engine, model.batcher, self.vad, self.limits)

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
        for model in self.ready():
            if all(model.can(task) for task in wanted):
                return model
        raise errors.invalid_argument(field, self._cannot("", wanted))

    def _cannot(self, name: str, tasks: list[Task]) -> str:
        what = " and ".join(_TASK_NAMES[task] for task in tasks)
        able = [m.name for m in self.ready() if all(m.can(task) for task in tasks)]
        who = f"model {name} cannot translate {what}" if name else f"no model here does {what}"
        if able:
            return f"{who}; use {' or '.join(repr(n) for n in able)} (ListModels lists them)"
        return f"{who}; ListModels lists what each model does"

    async def close(self) -> None:
        if self.stream_vad is not None:
            await self.stream_vad.close()
        await super().close()
