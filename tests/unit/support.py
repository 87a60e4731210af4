"""Helpers of the domain unit tests: a pretend RPC's stats and metrics, a test recording."""

from __future__ import annotations

import io

import numpy as np
import prometheus_client
import soundfile as sf

from speechmesh.runtime import interceptor
from speechmesh.runtime.interceptor import CallStats


def new_call() -> CallStats:
    """Starts a call in the running task's context (as the interceptor does for each RPC)
    and returns its stats."""
    stats = CallStats()
    interceptor._CALL.set(stats)
    return stats


def rtf_count(service: str, method: str) -> float:
    """How many calls the real-time factor histogram holds for `service` and `method`."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "speechmesh_real_time_factor_count", {"service": service, "method": method}
    )
    return value or 0.0


def wav(seconds: float, rate: int = 16000) -> bytes:
    """A WAV file of a 440 Hz tone."""
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return out.getvalue()
