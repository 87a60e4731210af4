"""Device and dtype choice: float32 on CPU, half precision on GPUs where the model allows it.

`dtype=auto` is decided per engine family (`AUTO_CUDA_DTYPES`): most run float16 on CUDA, but
Sesame CSM is trained and released in bfloat16 (its reference loads bfloat16; float16 overflows
into NaN logits), and VITS computes its durations and frame positions in the model's dtype
(float16 counts frames exactly only up to 2048, about 24-33 s of audio), so it runs float32.
"""

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


#: What `dtype=auto` means on CUDA, per engine family; families not named get float16 (what
#: Whisper, Seamless and the text translators run in).
AUTO_CUDA_DTYPES: dict[str, torch.dtype] = {
    # sesame/csm-1b ships bfloat16 and its reference generator runs in it; float16 risks NaN.
    "csm": torch.bfloat16,
    # VITS's duration sums and frame indices lose whole frames in float16 past ~33 s.
    "vits": torch.float32,
}


def auto_dtype(
    family: str, device: torch.device, bf16_supported: bool | None = None
) -> torch.dtype:
    """The dtype `auto` stands for: float32 on CPU; on CUDA the family's (`AUTO_CUDA_DTYPES`,
    else float16). bfloat16 falls back to float32 on a GPU without bfloat16 support (before
    Ampere), never to float16. `bf16_supported` None: asks the device."""
    if device.type != "cuda":
        return torch.float32
    dtype = AUTO_CUDA_DTYPES.get(family, torch.float16)
    if dtype == torch.bfloat16:
        if bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
        if not bf16_supported:
            return torch.float32
    return dtype


def resolve_dtype(spec: str, device: torch.device, family: str = "") -> torch.dtype:
    """`auto`: `auto_dtype(family, device)` (float32 on CPU, float16 on CUDA unless the family
    needs otherwise); else the dtype named."""
    if spec == "auto":
        return auto_dtype(family, device)
    dtype = getattr(torch, spec)
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("float16 is not supported on CPU; use float32 or bfloat16")
    return dtype


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )
