"""Picks the synthesis engine for a checkpoint by its `config.json` `model_type`."""

from __future__ import annotations

import json
import pathlib

from speechmesh.inference.devices import resolve_device, resolve_dtype
from speechmesh.tts.engines.base import SynthesisEngine

#: config.json model_type -> engine family that runs it.
ENGINE_TYPES = {"csm": "csm", "vits": "vits"}


def model_type(path: pathlib.Path) -> str:
    try:
        return str(json.loads((path / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path / 'config.json'} cannot be read: {error}") from None


def load_engine(path: pathlib.Path, name: str, device: str, dtype: str) -> SynthesisEngine:
    """Blocking: loads the checkpoint in the folder `path` as the engine its model type calls
    for, on `device` ("auto", "cpu", "cuda[:N]") in `dtype` ("auto", "float32", ...; `auto` is
    the family's choice, `speechmesh.inference.devices.auto_dtype`). `name` is what callers call
    the model. Not warmed up."""
    kind = model_type(path)
    torch_device = resolve_device(device)
    # `auto` per family: CSM bfloat16 and VITS float32 on CUDA (speechmesh.inference.devices).
    torch_dtype = resolve_dtype(dtype, torch_device, ENGINE_TYPES.get(kind, ""))
    if kind == "csm":
        from speechmesh.tts.engines.csm import CsmEngine

        return CsmEngine(name, path, torch_device, torch_dtype)
    if kind == "vits":
        from speechmesh.tts.engines.vits import VitsEngine

        return VitsEngine(name, path, torch_device, torch_dtype)
    raise ValueError(
        f"model {name} is a {kind or 'unknown'!r} checkpoint (config.json model_type); the TTS"
        " service runs Sesame CSM (csm) and VITS / MMS-TTS (vits) checkpoints"
    )
