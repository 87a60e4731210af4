"""Load state of a service's models, their stable ids, and handing a ready one to a request.

The id rule (one place for every service; ModelInfo.name in the protos says it to clients): a
model setting is `SOURCE` or `ID=SOURCE`, SOURCE a local folder or a Hugging Face id. The id is
the alias ID when given, else the last component of SOURCE (the folder's name, or what follows
the last "/" of a hub id): `../models/whisper-tiny.en` is "whisper-tiny.en",
`openai/whisper-large-v3-turbo` is "whisper-large-v3-turbo". Requests name a model by its id or,
as before ids existed, by its full SOURCE string. Two models of a service with one id are a
start-up error that says to alias one.
"""

from __future__ import annotations

import enum
import pathlib
import re
from typing import Protocol, TypeVar

import grpc

from speechmesh.common.v1 import common_pb2
from speechmesh.runtime import errors


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


_STATE_PROTOS = {
    ModelState.LOADING: common_pb2.MODEL_STATE_LOADING,
    ModelState.READY: common_pb2.MODEL_STATE_READY,
    ModelState.FAILED: common_pb2.MODEL_STATE_FAILED,
    ModelState.UNLOADED: common_pb2.MODEL_STATE_UNLOADED,
}


def state_proto(state: ModelState) -> int:
    """The speechmesh.common.v1.ModelState value of a load state."""
    return _STATE_PROTOS[state]


#: `ID=SOURCE`: an alias is a name without a slash; a folder whose name holds "=" is written
#: as a path ("./a=b").
_ALIAS = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)")


def model_id(source: str) -> str:
    """The id of a model loaded from `source` without an alias: its last path component."""
    last = source.strip().rstrip("/").rsplit("/", 1)[-1]
    if last in ("", ".", "..", "~"):
        last = pathlib.Path(source).expanduser().resolve().name
    return last or source


def model_spec(setting: str) -> tuple[str, str]:
    """(id, source) of one model setting, `SOURCE` or `ID=SOURCE`."""
    setting = setting.strip()
    alias = _ALIAS.fullmatch(setting)
    if alias:
        return alias.group(1), alias.group(2).strip()
    return model_id(setting), setting


class _Model(Protocol):
    name: str
    source: str
    state: ModelState
    error: str


M = TypeVar("M", bound=_Model)


def add_model(models: dict[str, M], model: M) -> None:
    """Adds `model` under its id. The same source twice is one model; two sources with one id
    are a ValueError (at start-up) saying how to tell them apart."""
    held = models.get(model.name)
    if held is None:
        models[model.name] = model
    elif held.source != model.source:
        raise ValueError(
            f"models {held.source!r} and {model.source!r} would both have the id"
            f" {model.name!r}; give one an alias of its own: ID={model.source}"
        )


def find_model(models: dict[str, M], name: str) -> M | None:
    """The model a request names: by id, else by its full source string."""
    model = models.get(name)
    if model is None:
        model = next((m for m in models.values() if m.source == name), None)
    return model


def unknown_model(models: dict[str, M], default: M, name: str) -> errors.ApiError:
    """NOT_FOUND for a model name that is not served here, listing the ones that are."""
    return errors.not_found(
        "model",
        name,
        f"model {name!r} is not served here; ListModels lists the models"
        f" ({', '.join(models)}; default {default.name})",
    )


def ready_model(models: dict[str, M], default: M, name: str) -> M:
    """The named model (by id or source; empty: the default) if it can serve now; otherwise
    the ApiError that says why: NOT_FOUND (not served here), UNAVAILABLE (loading, or failed
    to load)."""
    model = find_model(models, name) if name else default
    if model is None:
        raise unknown_model(models, default, name)
    if model.state is ModelState.UNLOADED:
        raise errors.unavailable(
            f"model {model.name} is unloaded; a request that may load it will",
            5.0,
            "MODEL_UNLOADED",
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
