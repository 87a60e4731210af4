"""What the transformers engines of the three services do alike with their checkpoint: load the
model on its device in its dtype for inference, and report what was loaded.

Each engine describes its own model; these steps are the same in every one of them.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple, TypeVar

import torch

from speechmesh.inference.devices import parameter_bytes
from speechmesh.inference.model_source import is_random_checkpoint

M = TypeVar("M", bound=torch.nn.Module)


class Loaded(NamedTuple):
    """What every engine reports of its loaded model (its `device`, `dtype`, `memory_bytes` and
    `random_weights`)."""

    device: str
    dtype: str
    memory_bytes: int
    random_weights: bool


def load_pretrained(
    model_class: type[M], path: pathlib.Path, device: torch.device, dtype: torch.dtype
) -> M:
    """`model_class.from_pretrained(path)` in `dtype`, moved to `device`, in eval mode."""
    model = model_class.from_pretrained(path, dtype=dtype)
    return model.to(device).eval()


def loaded(
    model: torch.nn.Module, path: pathlib.Path, device: torch.device, dtype: torch.dtype
) -> Loaded:
    """The report of `model`, loaded from `path` onto `device` in `dtype`."""
    return Loaded(
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        memory_bytes=parameter_bytes(model),
        random_weights=is_random_checkpoint(path),
    )
