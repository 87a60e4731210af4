"""What `dtype=auto` means per engine family and device (speechmesh.inference.devices)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechmesh.inference.devices import auto_dtype, resolve_dtype
from speechmesh.tts.engines.loader import load_engine

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize("family", ["csm", "vits", "whisper", "seamless_m4t_v2", "nllb", ""])
def test_cpu_is_float32_for_every_family(family: str) -> None:
    assert auto_dtype(family, CPU) == torch.float32
    assert resolve_dtype("auto", CPU, family) == torch.float32


@pytest.mark.parametrize(
    ("family", "dtype"),
    [
        ("csm", torch.bfloat16),  # csm-1b's reference dtype; float16 risks NaN logits
        ("vits", torch.float32),  # float16 durations are exact only up to ~33 s
        ("whisper", torch.float16),
        ("seamless_m4t_v2", torch.float16),
        ("nllb", torch.float16),
        ("", torch.float16),
    ],
)
def test_cuda_choice_per_family(family: str, dtype: torch.dtype) -> None:
    assert auto_dtype(family, CUDA, bf16_supported=True) == dtype


def test_csm_without_bfloat16_runs_float32_not_float16() -> None:
    assert auto_dtype("csm", CUDA, bf16_supported=False) == torch.float32


def test_an_explicit_dtype_wins() -> None:
    assert resolve_dtype("bfloat16", CPU, "vits") == torch.bfloat16
    assert resolve_dtype("float32", CPU, "csm") == torch.float32
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        resolve_dtype("float16", CPU, "csm")


def test_float16_durations_lose_frames_past_2048() -> None:
    """Why VITS runs float32: VitsModel keeps the cumulative durations (frame positions) in the
    model's dtype; float16 has no odd integers past 2048 frames (~24 s at 22 kHz, 33 s at
    16 kHz), so frames are lost or doubled there."""
    frames = torch.arange(2040, 2060, dtype=torch.float32)
    assert not torch.equal(frames.half().float(), frames)
    assert torch.equal(frames.half()[:9].float(), frames[:9])  # exact up to 2048


def test_tts_loader_uses_the_family_choice(tiny_vits_checkpoint: Path) -> None:
    engine = load_engine(tiny_vits_checkpoint, "tiny-vits", "cpu", "auto")
    assert engine.dtype == "float32"
