"""Speaking rate: audio made faster or slower with its pitch kept (FFmpeg's atempo filter)."""

from __future__ import annotations

import av
import numpy as np


def change_tempo(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """`samples` (float32 mono) played `factor` times as fast (0.25 to 4.0), same pitch."""
    if not 0.25 <= factor <= 4.0:
        raise ValueError(f"tempo factor {factor} is outside 0.25 to 4.0")
    if factor == 1.0 or not len(samples):
        return np.asarray(samples, dtype=np.float32)
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        format="flt", sample_rate=sample_rate, layout="mono", time_base=f"1/{sample_rate}"
    )
    # One atempo filter keeps its best quality within 0.5 to 2.0: beyond, two halfway steps.
    steps = 1 if 0.5 <= factor <= 2.0 else 2
    node = source
    for _ in range(steps):
        tempo = graph.add("atempo", f"{factor ** (1 / steps)}")
        node.link_to(tempo)
        node = tempo
    sink = graph.add("abuffersink")
    node.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32)[np.newaxis, :], format="flt", layout="mono"
    )
    frame.sample_rate = sample_rate
    frame.pts = 0
    graph.push(frame)
    graph.push(None)
    out = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().reshape(-1))
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
