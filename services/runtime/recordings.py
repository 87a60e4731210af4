"""The recording a unary speech call sends, and the metering of the call over it.

Recognition (ASR) and speech translation take a whole recording the same way: the bytes are
decoded (any container, or a raw format) and resampled off the event loop, the call's audio
seconds are counted as soon as they are known, and a recording longer than the service's limit is
refused; when the answer is ready, the call's real-time factor and the characters it produced are
recorded. The domain layers (Recognizer.recognize_audio, Translator.translate_recording) run
their work through `on_recording`, so each rule is written once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import numpy as np

from speechmesh.dsp.audio import Audio, AudioError, RawFormat, decode_audio
from speechmesh.runtime import errors, metrics
from speechmesh.runtime.interceptor import call_stats


class _Text(Protocol):
    @property
    def text(self) -> str: ...


R = TypeVar("R", bound=_Text)

#: Told how far the work on a recording has come: (seconds of it done, its length). Called
#: once the recording is decoded (0.0), then as its windows finish (the length at the end).
ProgressHook = Callable[[float, float], None]


async def on_recording(
    data: bytes,
    raw: RawFormat | None,
    sample_rate: int,
    work: Callable[[np.ndarray], Awaitable[R]],
    *,
    service: str,
    method: str,
    max_seconds: float,
    field: str = "audio",
    advice: str = "split it",
) -> R:
    """The result of `work` on a call's recording (`data` in a container, or in `raw` format),
    decoded to float32 mono at `sample_rate` (see decode_recording for the errors); the call is
    metered with the result's text (see meter, labelled `service` and `method`)."""
    started = time.perf_counter()
    audio = await decode_recording(
        data, raw, sample_rate, max_seconds=max_seconds, field=field, advice=advice
    )
    result = await work(audio.samples)
    meter(service, method, started, audio.duration, result.text)
    return result


async def decode_recording(
    data: bytes,
    raw: RawFormat | None,
    sample_rate: int,
    *,
    max_seconds: float,
    field: str = "audio",
    advice: str = "split it",
) -> Audio:
    """`data` decoded to float32 mono at `sample_rate`. INVALID_ARGUMENT naming `field` when it
    is empty, cannot be decoded, or lasts over `max_seconds` (`advice` says what to do then)."""
    if not data:
        raise errors.invalid_argument(field, "is empty; send the recording's bytes")
    # Decoding (MP3, long files) and resampling take milliseconds to seconds: off the loop.
    try:
        audio = await asyncio.to_thread(decode_audio, data, raw, sample_rate)
    except AudioError as error:
        raise errors.invalid_argument(field, str(error)) from None
    call_stats().audio_seconds = audio.duration
    if audio.duration > max_seconds:
        raise errors.invalid_argument(
            field,
            f"is {audio.duration:.0f} s long; at most {max_seconds:.0f} s per request ({advice})",
        )
    return audio


def meter(service: str, method: str, started: float, audio_seconds: float, text: str) -> None:
    """Records a finished call over `audio_seconds` of audio that began at `started`
    (time.perf_counter()) and produced `text`: its real-time factor and its characters."""
    if audio_seconds > 0:
        metrics.REAL_TIME_FACTOR.labels(service, method).observe(
            (time.perf_counter() - started) / audio_seconds
        )
    call_stats().characters = len(text)


class WindowProgress:
    """Tells a ProgressHook (if any) how far the work on a recording of `duration` seconds has
    come, by the speech of its windows done: each window's work is `jobs` batcher jobs (a
    translation and a transcript, say); `done` is told as each finishes."""

    def __init__(self, duration: float, hook: ProgressHook | None):
        self.duration = duration
        self.hook = hook
        self.work = 0.0
        self.worked = 0.0
        self.left = 0
        if hook is not None:
            hook(0.0, duration)

    def expect(self, windows: list[tuple[float, float]], jobs: int = 1) -> None:
        """The windows to work on, `jobs` batcher jobs each."""
        self.work = jobs * sum(end - start for start, end in windows)
        self.left = jobs * len(windows)
        if not self.left and self.hook is not None:
            self.hook(self.duration, self.duration)

    def done(self, seconds: float) -> None:
        """One job over a window of `seconds` finished."""
        self.worked += seconds
        self.left -= 1
        if self.hook is None:
            return
        if self.left <= 0 or self.work <= 0:
            self.hook(self.duration, self.duration)
        else:
            self.hook(self.duration * min(self.worked / self.work, 1.0), self.duration)
