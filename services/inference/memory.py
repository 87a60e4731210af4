"""Whether a model fits before it is loaded, what an out-of-memory failure looks like, and giving
memory back after an unload.

A checkpoint's weight files tell about how much memory its weights take (an upper bound when the
engine loads them in a smaller dtype or converts them to int8). A load is refused before any
weight is read when that would overrun the service's model memory budget (the sum of what its
loaded models hold) or the free memory of the device it runs on; a load that runs out of memory
anyway is recognised by its error. Either way that one load fails and the other models serve.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import pathlib

import torch

from speechmesh.inference.devices import resolve_device

MiB = 1024 * 1024
#: Weight files by format; the first format a folder has is the one engines load.
_WEIGHT_FORMATS = (("*.safetensors",), ("*.bin", "*.pt", "*.pth"))
_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


class DoesNotFit(MemoryError):
    """A model whose weights would not fit; the message says how much and where."""


def checkpoint_bytes(path: pathlib.Path) -> int:
    """Bytes of the weight files in a checkpoint folder (its subfolders included)."""
    for patterns in _WEIGHT_FORMATS:
        files = {f for pattern in patterns for f in path.rglob(pattern) if f.is_file()}
        if files:
            return sum(f.stat().st_size for f in files)
    return 0


def free_bytes(device_setting: str) -> int | None:
    """Free memory of the device a model would load on; None when it cannot be told."""
    try:
        device = resolve_device(device_setting)
    except ValueError:
        return None
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device.index or 0)[0])
    if device.type != "cpu":
        return None
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits(
    name: str,
    needed: int,
    held: dict[str, int],
    limit: int,
    device_setting: str,
    limit_setting: str = "the model memory budget",
) -> None:
    """Raises DoesNotFit when `needed` more bytes of weights overrun `limit` (0: no budget)
    beside the models `held` ({name: bytes}), or the device's free memory."""
    if limit and sum(held.values()) + needed > limit:
        loaded = ", ".join(f"{n} ({_mib(b)})" for n, b in held.items()) or "nothing"
        raise DoesNotFit(
            f"model {name} needs about {_mib(needed)} of weights, but {limit_setting} is"
            f" {_mib(limit)} and {loaded} already hold {_mib(sum(held.values()))}; unload a"
            f" model (UnloadModel) or raise {limit_setting}"
        )
    free = free_bytes(device_setting)
    if free is not None and needed > free:
        raise DoesNotFit(
            f"model {name} needs about {_mib(needed)} of weights, but the device"
            f" ({device_setting}) has {_mib(free)} free; unload a model (UnloadModel) or use a"
            " smaller one"
        )


def is_out_of_memory(error: BaseException) -> bool:
    """Whether a load failed for want of memory (host or device)."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    return any(words in str(error).lower() for words in _OOM_WORDS)


def describe_error(error: BaseException) -> str:
    """The error of a failed load as ListModels shows it."""
    text = str(error).strip() or error.__class__.__name__
    if is_out_of_memory(error) and not isinstance(error, DoesNotFit):
        return f"out of memory while loading: {text.splitlines()[0][:300]}"
    return text


def release() -> None:
    """Gives freed memory back: collects garbage, empties the CUDA cache, and asks glibc to
    return free heap pages to the system (so an unloaded model's RSS goes)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _mib(size: int) -> str:
    return f"{size / MiB:.0f} MiB" if size >= MiB else f"{size} bytes"
