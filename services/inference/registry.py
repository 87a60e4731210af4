"""The models a service serves, by id, with a default: loading, load state, and handing a
ready one to a request. Written once for every service.

A service subclasses ModelRegistry with what is its own: which engine a checkpoint opens
(`open_engine`), what serves a loaded engine (`serve`: its batcher, recognizer, translator...),
and what its models share (VAD, the voice store: its `load`/`close` around the registry's).
Each model is loaded by itself (`load_model`) and holds its own state, engine and batcher, so
that models of several engine families can sit side by side, and one can be loaded (or later
unloaded) while the others serve.
"""

from __future__ import annotations

import abc
import asyncio
import pathlib
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from speechmesh.inference.batcher import MicroBatcher
from speechmesh.inference.model_source import resolve_model
from speechmesh.inference.model_state import ModelState, add_model, model_spec, ready_model
from speechmesh.runtime.settings import ServiceSettings


class Engine(Protocol):
    """What the registry needs of an engine: a warm-up, and what the start-up log says."""

    device: str
    dtype: str
    random_weights: bool

    def warmup(self) -> None: ...


E = TypeVar("E", bound=Engine)


class ServedModel(Generic[E]):
    """One model of a service: its id and source (the id rule of model_state), the setting it
    comes from (for the error when it cannot be had), its load state, and once loaded its
    engine and the batcher that feeds it."""

    def __init__(self, setting: str, env_var: str, flag: str = "--model"):
        self.name, self.source = model_spec(setting)
        self.env_var = env_var
        self.flag = flag
        self.state = ModelState.LOADING
        #: Why it failed to load; empty unless FAILED.
        self.error = ""
        self.engine: E | None = None
        self.batcher: MicroBatcher[Any, Any] | None = None


M = TypeVar("M", bound=ServedModel)


class ModelRegistry(abc.ABC, Generic[M]):
    """Holds a service's models by id, loads them off the event loop (LOADING, then READY, or
    FAILED with the error kept) and hands a ready one to each request (`get`)."""

    def __init__(self, settings: ServiceSettings, default: M, log: Any):
        self.settings = settings
        self.log = log
        self.default = default
        self.models: dict[str, M] = {default.name: default}

    def add(self, model: M) -> None:
        """Serves `model` beside the others (not loaded yet). The same source twice is one model;
        two sources with one id are a ValueError saying how to tell them apart."""
        add_model(self.models, model)

    @abc.abstractmethod
    def open_engine(self, model: M, path: pathlib.Path) -> Any:
        """Blocking: the engine for `model` from its checkpoint folder, not warmed up."""

    @abc.abstractmethod
    def serve(self, model: M, engine: Any) -> None:
        """Sets up what serves a freshly loaded engine: at least `model.batcher`."""

    async def load(self) -> None:
        """Loads every model, one after the other; the first that fails is raised (start-up
        stops with its message) and stays FAILED with its error."""
        for model in list(self.models.values()):
            await self.load_model(model)

    async def load_model(self, model: M) -> None:
        """Loads and warms up one model off the event loop, then serves it."""
        model.state, model.error = ModelState.LOADING, ""
        try:
            engine = await asyncio.to_thread(self._load_engine, model)
            self.serve(model, engine)
        except Exception as error:
            model.state, model.error = ModelState.FAILED, str(error)
            raise
        model.engine = engine
        model.state = ModelState.READY
        self.log.info(
            "model.ready",
            model=model.name,
            engine=getattr(engine, "family", ""),
            device=engine.device,
            dtype=engine.dtype,
            random_weights=engine.random_weights,
        )

    def _load_engine(self, model: M) -> Any:
        path = resolve_model(model.source, model.env_var, model.flag)
        engine = self.open_engine(model, path)
        if self.settings.warmup:
            engine.warmup()
        return engine

    def batcher(
        self, model: M, run_batch: Callable, key: Callable, workers: int = 1
    ) -> MicroBatcher:
        """The micro-batcher of one model, sized by the service's settings; `workers` batches
        run at once (the engine says how many it can take side by side)."""
        s = self.settings
        return MicroBatcher(
            model.name,
            run_batch,
            max_batch_size=s.max_batch_size,
            max_wait_s=s.max_batch_wait_ms / 1000,
            max_queue=s.max_queue,
            key=key,
            workers=workers,
        )

    def get(self, name: str) -> M:
        """The named model (by id or source; empty: the default), ready to serve, or the
        ApiError that says why not: NOT_FOUND, or UNAVAILABLE while loading or after failing."""
        return ready_model(self.models, self.default, name)

    def ready(self) -> list[M]:
        """The models that can serve now, in the order they were added."""
        return [model for model in self.models.values() if model.state is ModelState.READY]

    async def close(self) -> None:
        """Stops every model's batcher (their queued jobs fail, none hangs)."""
        for model in self.models.values():
            if model.batcher is not None:
                await model.batcher.close()
