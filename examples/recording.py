"""What the streaming examples share: a recording read as 16-bit mono, and fed in small chunks
at its own pace, as a microphone would give it."""

import asyncio

import numpy as np
import soundfile as sf

CHUNK_SECONDS = 0.1


def read_linear16(path: str) -> tuple[np.ndarray, int]:
    """The first channel of the recording at `path` as int16 samples, and its sample rate."""
    samples, rate = sf.read(path, dtype="int16", always_2d=True)
    return np.ascontiguousarray(samples[:, 0]), rate


async def live_chunks(samples: np.ndarray, rate: int):
    """The samples' LINEAR16 bytes, CHUNK_SECONDS at a time, each followed by the time it lasts."""
    step = int(rate * CHUNK_SECONDS)
    for start in range(0, len(samples), step):
        yield samples[start : start + step].tobytes()
        await asyncio.sleep(CHUNK_SECONDS)
