"""Device and dtype choice: float32 on CPU, half precision on GPUs."""

from __future__ import annotations

import torch


def resolve_device(spec: str) -> torch.device:
    """`auto` picks the first CUDA device when there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but no CUDA device is available")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r} asked for, but only {torch.cuda.device_count()}"
                " CUDA devices exist"
            )
        return torch.device("cuda", index)
    return device


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """`auto`: float32 on CPU, float16 on CUDA (what Whisper and Seamless are trained for)."""
    if spec == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    dtype = getattr(torch, spec)
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("float16 is not supported on CPU; use float32 or bfloat16")
    return dtype


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )
