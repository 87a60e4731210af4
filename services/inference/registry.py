"""The models a service serves, by id, with a default: loading, unloading, load state, and
handing a ready one to a request. Written once for every service.

A service subclasses ModelRegistry with what is its own: which engine a checkpoint opens
(`open_engine`), what serves a loaded engine (`serve`: its batcher, recognizer, translator...),
and what its models share (VAD, the voice store: its `load`/`close` around the registry's).
Each model is loaded by itself (`load_model`) and holds its own state, engine and batcher, so
that models of several engine families sit side by side, and one can be loaded or unloaded
while the others serve.

Life of a model: LOADING -> READY, or FAILED with the error kept. At start-up the default model
loads first and its failure stops start-up; any other model that fails is kept FAILED (listed
with its error) while the rest serve. A READY model other than the default can be unloaded
(`unload_model`, or by the idle reaper after `idle_unload_s` unused): its batcher stops, its
engine is dropped and its memory freed, and it is UNLOADED until the next request that names
it (`use`), which loads it and waits. Requests hold a model while they use it (`use`), so an
unload waits for them, and requests that arrive meanwhile wait for the unload and then load it
again. Loads are checked against a memory budget (`memory_limit_bytes`, and the device's free
memory) before any weight is read; one that does not fit fails alone.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gc
import pathlib
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

import grpc

from speechmesh.inference import memory
from speechmesh.inference.batcher import MicroBatcher
from speechmesh.inference.model_source import resolve_model
from speechmesh.inference.model_state import (
    ModelState,
    add_model,
    find_model,
    model_spec,
    ready_model,
    unknown_model,
)
from speechmesh.runtime import errors
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
        #: The status a request for it gets while FAILED (RESOURCE_EXHAUSTED when it did not
        #: fit in memory, else UNAVAILABLE).
        self.error_code = grpc.StatusCode.UNAVAILABLE
        self.engine: E | None = None
        self.batcher: MicroBatcher[Any, Any] | None = None
        #: Requests using it now (`ModelRegistry.use`), and when the last one ended.
        self.users = 0
        self.last_used = time.monotonic()
        #: Held while it loads or unloads; requests that find it held wait for it.
        self.transition = asyncio.Lock()
        #: Set while an unload waits for the requests using it (no new ones start).
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()


M = TypeVar("M", bound=ServedModel)

#: What a model added at run time may be called (model ids have no "/" and no "=").
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ModelRegistry(abc.ABC, Generic[M]):
    """Holds a service's models by id, loads them off the event loop (LOADING, then READY, or
    FAILED with the error kept), unloads idle ones, and hands a ready one to each request."""

    def __init__(
        self,
        settings: ServiceSettings,
        default: M,
        log: Any,
        *,
        idle_unload_s: float = 0.0,
        memory_limit_bytes: int = 0,
    ):
        self.settings = settings
        self.log = log
        self.default = default
        self.models: dict[str, M] = {default.name: default}
        #: Seconds a model other than the default may sit unused before it is unloaded; 0:
        #: never.
        self.idle_unload_s = idle_unload_s
        #: Most bytes of weights the service holds at once; 0: only the device's free memory
        #: limits it.
        self.memory_limit_bytes = memory_limit_bytes
        #: How the budget is set, for the message of a load that overruns it.
        self.memory_limit_setting = "the service's model memory budget"
        #: Set once start-up loading is over; before that a LOADING model is UNAVAILABLE at once
        #: (the service is not serving yet), after it requests wait for a model to load.
        self.started = False
        self._reaper: asyncio.Task | None = None

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

    def new_model(self, name: str, source: str) -> M:
        """A model added at run time (LoadModel with a source). Services that allow it override
        this; by default it is refused."""
        raise errors.failed_precondition(
            "this service loads only the models it was configured with", "MODEL_NOT_ADDABLE"
        )

    # -- loading -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Start-up: loads the default model (its failure is raised: start-up stops with its
        message), then every other one; those that fail stay FAILED with their error and the
        service serves the rest. Starts the idle reaper when idle unloading is on."""
        await self.load_model(self.default)
        for model in list(self.models.values()):
            if model is self.default:
                continue
            try:
                await self.load_model(model)
            except Exception as error:
                self.log.warning("model.failed", model=model.name, error=str(error))
        self.started = True
        if self.idle_unload_s > 0 and self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle())

    async def load_model(self, model: M) -> None:
        """Loads and warms up one model off the event loop, then serves it; raises what stopped
        it (the model is then FAILED with the error). A READY model is left as it is."""
        async with model.transition:
            if model.state is not ModelState.READY:
                await self._load(model)

    async def _load(self, model: M) -> None:
        model.state, model.error = ModelState.LOADING, ""
        try:
            path = await asyncio.to_thread(resolve_model, model.source, model.env_var, model.flag)
            self._check_fits(model, path)
            engine = await asyncio.to_thread(self._open, model, path)
            self.serve(model, engine)
        except Exception as error:
            model.state, model.error = ModelState.FAILED, memory.describe_error(error)
            model.error_code = (
                grpc.StatusCode.RESOURCE_EXHAUSTED
                if memory.is_out_of_memory(error)
                else grpc.StatusCode.UNAVAILABLE
            )
            model.engine = model.batcher = None
            gc.collect()
            raise
        model.engine = engine
        model.state = ModelState.READY
        model.last_used = time.monotonic()
        self.log.info(
            "model.ready",
            model=model.name,
            engine=getattr(engine, "family", ""),
            device=engine.device,
            dtype=engine.dtype,
            random_weights=engine.random_weights,
        )

    def _open(self, model: M, path: pathlib.Path) -> Any:
        engine = self.open_engine(model, path)
        if self.settings.warmup:
            engine.warmup()
        return engine

    def _check_fits(self, model: M, path: pathlib.Path) -> None:
        """Raises memory.DoesNotFit when `model`'s weights would overrun the budget or the
        device's free memory, before anything is read."""
        held = {
            m.name: getattr(m.engine, "memory_bytes", 0) for m in self.ready() if m is not model
        }
        memory.check_fits(
            model.name,
            memory.checkpoint_bytes(path),
            held,
            self.memory_limit_bytes,
            self.settings.device,
            self.memory_limit_setting,
        )

    async def load_named(self, name: str, source: str = "") -> M:
        """LoadModel: loads the model `name` (one this service knows, or a new one from
        `source`) and returns it ready; raises the status that says why not (INVALID_ARGUMENT,
        NOT_FOUND, RESOURCE_EXHAUSTED when it does not fit, UNAVAILABLE with the load error)."""
        if not name:
            raise errors.invalid_argument("name", "is required: the id of a model (ListModels)")
        model = find_model(self.models, name)
        if model is None:
            if not source:
                raise unknown_model(self.models, self.default, name)
            if not _ID.fullmatch(name):
                raise errors.invalid_argument(
                    "name", f"{name!r} is not a model id: use letters, digits, '.', '_' and '-'"
                )
            model = self.new_model(name, source.strip())
            model.state = ModelState.UNLOADED
            self.add(model)
            self.log.info("model.added", model=model.name, source=model.source)
        elif source and source.strip() != model.source:
            raise errors.invalid_argument(
                "source",
                f"model {model.name} is loaded from {model.source!r}, not {source!r}; leave"
                " source empty, or give the new model a name of its own",
            )
        try:
            await self.load_model(model)
        except Exception:
            raise _failed(model) from None
        return model

    # -- unloading -----------------------------------------------------------------------------

    async def unload_model(self, model: M, reason: str = "operator") -> None:
        """Frees `model`'s memory once the requests using it are done (new ones wait, then load
        it again); it is then UNLOADED. FAILED_PRECONDITION for the default model."""
        if model is self.default:
            raise errors.failed_precondition(
                f"model {model.name} is the service's default: requests that name no model use"
                " it, so it stays loaded; change the default (SPEECHMESH_*_MODEL) to unload it",
                "DEFAULT_MODEL",
            )
        async with model.transition:
            if model.state is not ModelState.READY:
                if model.state is ModelState.FAILED:
                    model.state, model.error = ModelState.UNLOADED, ""
                return
            model.draining = True
            try:
                await model._idle.wait()
                batcher, model.batcher, model.engine = model.batcher, None, None
                model.state = ModelState.UNLOADED
                self.unserve(model)
                if batcher is not None:
                    await batcher.close()
                del batcher
                await asyncio.to_thread(memory.release)
            finally:
                model.draining = False
        self.log.info("model.unloaded", model=model.name, reason=reason)

    def unserve(self, model: M) -> None:
        """Drops what `serve` set up besides the batcher and engine (services override)."""

    async def _reap_idle(self) -> None:
        period = max(0.05, min(self.idle_unload_s / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for model in list(self.models.values()):
                if (
                    model is not self.default
                    and model.state is ModelState.READY
                    and model.users == 0
                    and not model.transition.locked()
                    and now - model.last_used >= self.idle_unload_s
                ):
                    await self.unload_model(model, reason="idle")

    # -- serving requests ----------------------------------------------------------------------

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

    def find(self, name: str) -> M:
        """The named model (by id or source; empty: the default) in any state, or NOT_FOUND
        listing the models."""
        model = find_model(self.models, name) if name else self.default
        if model is None:
            raise unknown_model(self.models, self.default, name)
        return model

    def known(self, name: str) -> M:
        """The named model if it serves or can be loaded to serve (READY, LOADING or UNLOADED);
        NOT_FOUND for an unknown name, the load error for a FAILED one."""
        model = self.find(name)
        if model.state is ModelState.FAILED:
            raise _failed(model)
        return model

    def get(self, name: str) -> M:
        """The named model (by id or source; empty: the default), ready to serve, or the
        ApiError that says why not: NOT_FOUND, or UNAVAILABLE while loading, unloaded or after
        failing. For a request that should load an unloaded model and wait, see `use`."""
        return ready_model(self.models, self.default, name)

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[M]:
        """The named model, ready, held for the block: an unload waits until the block ends. An
        UNLOADED model is loaded first (the request waits for it, ListModels says LOADING
        meanwhile); one being loaded or unloaded is waited for. NOT_FOUND for an unknown name,
        UNAVAILABLE (or RESOURCE_EXHAUSTED) with the load error for a failed one."""
        model = await self.acquire(name)
        model.users += 1
        model._idle.clear()
        try:
            yield model
        finally:
            model.users -= 1
            model.last_used = time.monotonic()
            if model.users == 0:
                model._idle.set()

    async def acquire(self, name: str) -> M:
        """The named model once it is READY (see `use`, which also holds it). Returns without
        awaiting after the last check, so the caller can hold it before anything else runs."""
        model = self.find(name)
        while True:
            if model.state is ModelState.READY and not model.draining:
                model.last_used = time.monotonic()
                return model
            if model.state is ModelState.FAILED:
                raise _failed(model)
            if model.state is ModelState.LOADING and not self.started:
                return ready_model(self.models, self.default, model.name)  # UNAVAILABLE
            if model.state is ModelState.UNLOADED and not model.transition.locked():
                self.log.info("model.reloading", model=model.name)
                try:
                    await self.load_model(model)
                except Exception:
                    raise _failed(model) from None
                continue
            async with model.transition:  # a load or unload under way: wait for it
                pass

    def ready(self) -> list[M]:
        """The models that can serve now, in the order they were added."""
        return [model for model in self.models.values() if model.state is ModelState.READY]

    async def close(self) -> None:
        """Stops the idle reaper and every model's batcher (their queued jobs fail, none
        hangs)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for model in self.models.values():
            if model.batcher is not None:
                await model.batcher.close()


def _failed(model: ServedModel) -> errors.ApiError:
    return errors.ApiError(model.error_code, f"model {model.name} failed to load: {model.error}")
