"""Client-side audio: reading sources, decoding files, chunking, real-time pacing, and cutting
long recordings at quiet points.

Files are decoded with the services' own decoder (soundfile, then PyAV/FFmpeg), so anything
the services read, the client can stream: WAV, FLAC, MP3, OGG, WebM, M4A, AIFF.
"""

from __future__ import annotations

import asyncio
import io
import os
import pathlib
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import IO, Any

import numpy as np

#: Rate the client sends decoded audio at (what the models use).
STREAM_RATE = 16000
#: Audio per streamed chunk, seconds.
CHUNK_SECONDS = 0.1

AudioSource = bytes | bytearray | memoryview | str | os.PathLike | IO[bytes]


class AudioFileError(ValueError):
    """A file that cannot be read or is not audio; the message says which."""


def read_bytes(source: Any) -> bytes:
    """The bytes of `source`: bytes, a path, "-" (standard input) or a binary file object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        if str(source) == "-":
            import sys

            return sys.stdin.buffer.read()
        path = pathlib.Path(source)
        if not path.exists():
            raise AudioFileError(f"{path}: no such file")
        if path.is_dir():
            raise AudioFileError(f"{path}: is a folder, not an audio file")
        try:
            return path.read_bytes()
        except OSError as error:
            raise AudioFileError(f"{path}: {error.strerror or error}") from error
    if hasattr(source, "read"):
        return source.read()
    raise TypeError(f"audio must be bytes, a path or a binary file, not {type(source).__name__}")


def decode(data: bytes, name: str = "audio", rate: int = STREAM_RATE) -> np.ndarray:
    """A container file's samples as float32 mono at `rate`; AudioFileError if not audio."""
    from speechmesh.dsp.audio import AudioError, decode_audio

    try:
        return decode_audio(data, None, rate).samples
    except AudioError as error:
        reason = str(error).split("; for raw samples")[0]  # the API's hint: not for files
        raise AudioFileError(f"{name}: not an audio file that can be read ({reason})") from error


def to_linear16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] (or int16 already) as raw LINEAR16 bytes."""
    if samples.dtype == np.int16:
        return samples.astype("<i2").tobytes()
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def chunks(pcm: bytes, rate: int = STREAM_RATE, chunk_seconds: float = CHUNK_SECONDS):
    """Raw LINEAR16 mono bytes cut into chunks of `chunk_seconds`."""
    step = max(2, int(rate * chunk_seconds) * 2)
    for start in range(0, len(pcm), step):
        yield pcm[start : start + step]


def paced(items: Iterable[bytes], chunk_seconds: float) -> Iterator[bytes]:
    """Yields each chunk no sooner than real time allows (as a microphone would)."""
    started = time.monotonic()
    for index, item in enumerate(items):
        delay = started + index * chunk_seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item


async def apaced(items: Iterable[bytes], chunk_seconds: float) -> AsyncIterator[bytes]:
    started = time.monotonic()
    for index, item in enumerate(items):
        delay = started + index * chunk_seconds - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield item


def file_chunks(
    source: Any, *, realtime: bool = False, chunk_seconds: float = CHUNK_SECONDS
) -> Iterator[bytes]:
    """A file decoded to 16 kHz mono LINEAR16 in chunks, paced in real time if asked."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "audio"
    pcm = to_linear16(decode(read_bytes(source), name))
    pieces = chunks(pcm, STREAM_RATE, chunk_seconds)
    return paced(pieces, chunk_seconds) if realtime else pieces


def quiet_cuts(
    samples: np.ndarray, rate: int, piece_seconds: float, search_seconds: float = 15.0
) -> list[tuple[float, float]]:
    """(start, end) seconds of pieces of at most `piece_seconds`, each cut at the quietest
    100 ms in its last `search_seconds`, so that a cut rarely falls inside a word."""
    duration = len(samples) / rate
    if duration <= piece_seconds * 1.25:
        return [(0.0, duration)]
    frame = rate // 10
    usable = len(samples) // frame * frame
    energy = np.sqrt(np.mean(samples[:usable].reshape(-1, frame) ** 2, axis=1))
    cuts: list[tuple[float, float]] = []
    start = 0.0
    while duration - start > piece_seconds * 1.25:
        lo = int((start + max(piece_seconds - search_seconds, piece_seconds / 2)) * 10)
        hi = min(int((start + piece_seconds) * 10), len(energy))
        window = energy[lo:hi]
        cut = (lo + int(np.argmin(window))) / 10 + 0.05 if len(window) else start + piece_seconds
        cuts.append((start, cut))
        start = cut
    cuts.append((start, duration))
    return cuts


def array_to_bytes(chunk: Any, encoding: str | None) -> bytes:
    """A chunk of a stream as bytes: bytes as they are; numpy arrays converted to the
    stream's raw encoding (float arrays to LINEAR16 or FLOAT32, int16 arrays to LINEAR16)."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, np.ndarray):
        if encoding in (None, "linear16"):
            return to_linear16(chunk)
        if encoding == "float32":
            return chunk.astype("<f4").tobytes()
        return chunk.tobytes()
    raise TypeError(f"audio chunks must be bytes or numpy arrays, not {type(chunk).__name__}")


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
