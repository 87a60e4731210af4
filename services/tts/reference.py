"""Reference recordings for voice cloning: checked, trimmed, resampled and normalised.

A cloned voice is only as good as its reference. `prepare_reference` refuses recordings a model
cannot learn a voice from (silent, clipped, too short, too long) with a reason code and a message
that says what to fix, and turns the others into what engines expect: float32 mono at the
engine's rate, leading and trailing silence trimmed (with a margin), DC removed, and speech at a
steady level (-20 dBFS RMS, peaks at most -1 dBFS).

Lengths follow the API contract (`ReferenceAudio.audio`: 1 to 30 seconds of one speaker) and
are measured without the leading and trailing silence.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

#: Default shortest and longest reference, in seconds of sound (leading and trailing silence
#: not counted), as the API documents them.
MIN_SECONDS = 1.0
MAX_SECONDS = 30.0
#: Longest transcript, in Unicode code points.
MAX_TRANSCRIPT_CHARS = 1000

#: Speech quieter than this (RMS of the trimmed recording) counts as silence.
SILENCE_DBFS = -50.0
#: Output level: RMS of the trimmed recording, and the highest peak allowed.
TARGET_RMS_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0

# Clipping: samples at full scale (|x| >= _FULL_SCALE) in more than _CLIPPED_FRACTION of the
# recording, or flat tops (runs of at least _FLAT_TOP_S at the recording's own peak level, which
# also catches audio that was clipped and then attenuated, or mu-law's lower full scale) in more
# than _FLAT_TOP_FRACTION of it. A natural peak stays within 0.1 % of its top for well under
# 0.1 ms at speech frequencies, so flat tops of 0.2 ms are the mark of a clipper.
_FULL_SCALE = 0.999
_CLIPPED_FRACTION = 0.01
_FLAT_TOP_S = 0.0002
_FLAT_TOP_LEVEL = 0.999  # of the recording's peak
_FLAT_TOP_MIN_PEAK = 0.25
_FLAT_TOP_FRACTION = 0.001

# Trimming: 10 ms frames; a frame is sound when its RMS is within _TRIM_RANGE_DB of the loudest
# frame and above _TRIM_FLOOR_DBFS; _TRIM_MARGIN_S of what surrounds the sound is kept, and the
# cut ends fade in and out over _FADE_S.
_FRAME_S = 0.01
_TRIM_RANGE_DB = 40.0
_TRIM_FLOOR_DBFS = -60.0
_TRIM_MARGIN_S = 0.2
_FADE_S = 0.01

TOO_SHORT = "TOO_SHORT"
TOO_LONG = "TOO_LONG"
SILENT = "SILENT"
CLIPPED = "CLIPPED"
REASONS = (TOO_SHORT, TOO_LONG, SILENT, CLIPPED)


class ReferenceAudioError(ValueError):
    """A reference recording that cannot clone a voice.

    `reason` is one of REASONS ("TOO_SHORT", "TOO_LONG", "SILENT", "CLIPPED"); `message` (also
    str(error)) says what is wrong and what to send instead, and is meant for API callers.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class TranscriptError(ValueError):
    """A reference transcript outside 1 to MAX_TRANSCRIPT_CHARS code points; str() says why."""


def _db(value: float) -> float:
    return 20.0 * float(np.log10(max(value, 1e-10)))


def _gain(dbfs: float) -> float:
    return float(10.0 ** (dbfs / 20.0))


def check_transcript(text: str) -> str:
    """The transcript stripped of surrounding white space; TranscriptError if empty or longer
    than MAX_TRANSCRIPT_CHARS code points."""
    stripped = text.strip()
    if not stripped:
        raise TranscriptError(
            "transcript is empty; send the exact words spoken in the reference audio"
        )
    if len(stripped) > MAX_TRANSCRIPT_CHARS:
        raise TranscriptError(
            f"transcript is {len(stripped)} characters long; at most {MAX_TRANSCRIPT_CHARS} "
            "are allowed (send a shorter reference recording and its words)"
        )
    return stripped


def _seconds(value: float, rounding) -> str:
    """Seconds to two decimals, rounded away from the limit that was crossed."""
    return f"{rounding(value * 100) / 100:g}"


def _span(seconds_range: tuple[float, float]) -> str:
    low, high = seconds_range
    return f"send {low:g} to {high:g} s of one speaker"


def _clipping(x: np.ndarray, sample_rate: int) -> str | None:
    """Why x looks clipped, or None."""
    magnitude = np.abs(x)
    peak = float(magnitude.max())
    full = magnitude >= _FULL_SCALE
    fraction = float(full.mean())
    if fraction > _CLIPPED_FRACTION:
        return f"{fraction:.1%} of its samples are at full scale"
    if peak < _FLAT_TOP_MIN_PEAK:
        return None
    level = min(_FULL_SCALE, peak * _FLAT_TOP_LEVEL)
    # +1 / -1 / 0 per sample: at the top, at the bottom, in between; flat tops are runs of one
    # non-zero value.
    side = np.where(x >= level, 1, np.where(x <= -level, -1, 0)).astype(np.int8)
    changes = np.flatnonzero(np.diff(side)) + 1
    starts = np.concatenate(([0], changes))
    lengths = np.diff(np.concatenate((starts, [len(side)])))
    min_run = max(3, round(sample_rate * _FLAT_TOP_S))
    flat = (side[starts] != 0) & (lengths >= min_run)
    flat_samples = int(lengths[flat].sum())
    if flat_samples > _FLAT_TOP_FRACTION * len(x):
        return f"it has {int(flat.sum())} flattened peaks"
    return None


def _sound_bounds(x: np.ndarray, sample_rate: int) -> tuple[int, int] | None:
    """[start, end) of x without its leading and trailing silence, or None if no 10 ms frame
    is above the trimming floor."""
    frame = max(1, round(sample_rate * _FRAME_S))
    starts = np.arange(0, len(x), frame)
    energy = np.add.reduceat(np.square(x, dtype=np.float64), starts)
    rms = np.sqrt(energy / np.diff(np.append(starts, len(x))))
    threshold = max(_gain(_TRIM_FLOOR_DBFS), float(rms.max()) * _gain(-_TRIM_RANGE_DB))
    loud = np.flatnonzero(rms > threshold)
    if not len(loud):
        return None
    return int(starts[loud[0]]), min(len(x), int(starts[loud[-1]]) + frame)


def _rms_dbfs(x: np.ndarray) -> float:
    return _db(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


def prepare_reference(
    audio: np.ndarray,
    sample_rate: int,
    target_rate: int,
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> np.ndarray:
    """Check a reference recording and make it ready for an engine.

    audio: float32 mono samples in [-1, 1] at sample_rate (what `decode_audio` returns).
    Returns float32 mono at target_rate: DC removed, leading and trailing silence trimmed to a
    0.2 s margin, speech at -20 dBFS RMS with peaks at most -1 dBFS.
    Raises ReferenceAudioError (SILENT, CLIPPED, TOO_SHORT, TOO_LONG; length is measured
    without the leading and trailing silence) and ValueError for malformed arguments.
    """
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"reference audio must be mono (1-D), got shape {x.shape}")
    if sample_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {sample_rate} and {target_rate}")
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("reference audio contains NaN or infinite sample values")
    seconds_range = (min_seconds, max_seconds)
    total_s = len(x) / sample_rate
    if not len(x) or not np.any(x):
        raise ReferenceAudioError(
            SILENT, f"reference audio is silent; {_span(seconds_range)}, speaking clearly"
        )

    why_clipped = _clipping(x, sample_rate)
    if why_clipped:
        raise ReferenceAudioError(
            CLIPPED,
            f"reference audio is clipped ({why_clipped}); record it again with a lower input "
            "gain or further from the microphone, so that peaks stay below full scale",
        )

    x = x - np.float32(x.mean(dtype=np.float64))
    bounds = _sound_bounds(x, sample_rate)
    start, end = bounds or (0, len(x))
    level_dbfs = _rms_dbfs(x[start:end])  # of the sound, without the silence around it
    if bounds is None or level_dbfs < SILENCE_DBFS:
        raise ReferenceAudioError(
            SILENT,
            f"reference audio is nearly silent (speech level {level_dbfs:.0f} dBFS, at least "
            f"{SILENCE_DBFS:.0f} dBFS is needed); record one speaker closer to the microphone "
            "or with more input gain",
        )

    sound_s = (end - start) / sample_rate
    around = ""
    if total_s - sound_s >= 0.05:
        around = f" ({_seconds(total_s, round)} s with the silence around it)"
    if sound_s < min_seconds:
        raise ReferenceAudioError(
            TOO_SHORT,
            f"reference audio has {_seconds(sound_s, math.floor)} s of sound{around}; "
            f"{_span(seconds_range)} (5 to 15 s of clear speech works best)",
        )
    if sound_s > max_seconds:
        raise ReferenceAudioError(
            TOO_LONG,
            f"reference audio has {_seconds(sound_s, math.ceil)} s of sound{around}; "
            f"{_span(seconds_range)} (5 to 15 s of clear speech works best)",
        )

    # Keep a little of the silence around the sound, never past max_seconds in all.
    margin = min(
        round(sample_rate * _TRIM_MARGIN_S), int(sample_rate * (max_seconds - sound_s) / 2)
    )
    cut_start, cut_end = max(0, start - margin), min(len(x), end + margin)
    x = x[cut_start:cut_end]
    if sample_rate != target_rate:
        x = soxr.resample(x, sample_rate, target_rate, quality="HQ").astype(np.float32)
    # The level is set on the sound itself, not on the kept silence.
    scale = len(x) / (cut_end - cut_start)
    sound = x[round((start - cut_start) * scale) : round((end - cut_start) * scale)]
    peak = float(np.abs(x).max())
    gain = min(_gain(TARGET_RMS_DBFS - _rms_dbfs(sound)), _gain(PEAK_CEILING_DBFS) / peak)
    x = x * np.float32(gain)
    fade = min(round(target_rate * _FADE_S), len(x) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return np.clip(x, -1.0, 1.0).astype(np.float32)
