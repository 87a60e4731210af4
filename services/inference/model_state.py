"""Load state of a service's models, and handing a ready one to a request."""

from __future__ import annotations

import enum
from typing import Protocol, TypeVar

import grpc

from speechmesh.inference.batcher import MicroBatcher
from speechmesh.runtime import errors


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class _Model(Protocol):
    name: str
    state: ModelState
    error: str


M = TypeVar("M", bound=_Model)


def ready_model(models: dict[str, M], default: M, name: str) -> M:
    """The named model (empty: the default) if it can serve now; otherwise the ApiError
    that says why: NOT_FOUND (not served here), UNAVAILABLE (loading, or failed to load)."""
    model = models.get(name) if name else default
    if model is None:
        raise errors.not_found(
            "model",
            name,
            f"model {name!r} is not served here; ListModels lists the models"
            f" ({', '.join(models)}; default {default.name})",
        )
    if model.state is ModelState.LOADING:
        raise errors.unavailable(
            f"model {model.name} is still loading; retry shortly", 5.0, "MODEL_LOADING"
        )
    if model.state is ModelState.FAILED:
        raise errors.ApiError(
            grpc.StatusCode.UNAVAILABLE, f"model {model.name} failed to load: {model.error}"
        )
    return model


def model_batcher(name: str, run_batch, settings, key, workers: int = 1) -> MicroBatcher:
    """The micro-batcher of one model, sized by the service's settings; `workers` batches
    run at once (the engine says how many it can take side by side)."""
    return MicroBatcher(
        name,
        run_batch,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_ms / 1000,
        max_queue=settings.max_queue,
        key=key,
        workers=workers,
    )


def log_ready(log, name: str, engine) -> None:
    """The start-up event of a model that is ready to serve."""
    log.info(
        "model.ready",
        model=name,
        engine=getattr(engine, "family", ""),
        device=engine.device,
        dtype=engine.dtype,
        random_weights=engine.random_weights,
    )
