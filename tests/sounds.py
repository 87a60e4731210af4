"""Audio made up for tests: a voice-like signal that passes TTS reference validation, and WAV."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def voice_like(seconds: float = 4.0, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-paced signal at a speaking level: passes reference validation."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.5 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.15 * voiced * envelope + 0.002 * rng.normal(size=len(t))).astype(np.float32)


def wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    """16-bit PCM WAV bytes of `samples`."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


#: Four seconds of voice_like as WAV: a reference recording to clone a voice from.
REFERENCE = wav(voice_like())
