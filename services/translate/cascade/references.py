"""Which source audio each segment's speech is cloned from (the speaker's own voice).

A segment of at least `min_seconds` is its own reference. A shorter one borrows its neighbours:
the nearest segment (by the pause between them) is added while it is the same speaker as what
the window holds (speechmesh.dsp.speakers) and the window stays within `max_seconds`, until it
reaches `min_seconds`. The window is always whole segments, so its transcript is exactly their
texts. A segment that cannot reach `min_seconds` of its own speaker gets no reference, with the
reason, and is spoken by the fallback voice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from speechmesh.dsp.speakers import mfcc, same_speaker

#: Shortest and longest reference the TTS service clones from, seconds.
MIN_SECONDS = 3.0
MAX_SECONDS = 30.0


@dataclass
class SourceSegment:
    """A recognized segment: its times in the source (seconds), its text in the source
    language, and its audio (16 kHz float32 mono)."""

    start: float
    end: float
    text: str
    audio: np.ndarray
    _frames: np.ndarray | None = field(default=None, repr=False)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            self._frames = mfcc(self.audio)
        return self._frames


@dataclass(frozen=True)
class Reference:
    """Consecutive segments (indices into the list given) that make one speaker's reference."""

    indices: tuple[int, ...]
    start: float
    end: float
    transcript: str
    audio: np.ndarray


@dataclass(frozen=True)
class NoReference:
    """Why a segment has no reference of its speaker."""

    reason: str


def choose_references(
    segments: Sequence[SourceSegment],
    targets: Sequence[int] | None = None,
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> dict[int, Reference | NoReference]:
    """The reference of each segment in `targets` (default: all), from `segments` in time
    order; segments without text never join a window."""
    wanted = range(len(segments)) if targets is None else targets
    return {i: _reference(segments, i, min_seconds, max_seconds) for i in wanted}


def _reference(
    segments: Sequence[SourceSegment], i: int, min_seconds: float, max_seconds: float
) -> Reference | NoReference:
    own = segments[i]
    if own.seconds > max_seconds:
        return NoReference(
            f"the segment is {own.seconds:.1f} s, longer than the {max_seconds:.0f} s a voice"
            " is cloned from"
        )
    chosen = [i]
    total = own.seconds
    window = own.frames
    left, right = i - 1, i + 1
    while total < min_seconds:
        options = []
        if left >= 0:
            options.append((segments[chosen[0]].start - segments[left].end, left))
        if right < len(segments):
            options.append((segments[right].start - segments[chosen[-1]].end, right))
        if not options:
            break
        _, pick = min(options)
        candidate = segments[pick]
        span = max(segments[chosen[-1]].end, candidate.end) - min(
            segments[chosen[0]].start, candidate.start
        )
        accepted = bool(candidate.text.strip()) and span <= max_seconds
        accepted = accepted and same_speaker(window, candidate.frames)
        if accepted:
            chosen = sorted([*chosen, pick])
            total += candidate.seconds
            window = np.vstack([window, candidate.frames])
        # A different speaker (or an unusable segment) closes that side: the window never
        # reaches past one.
        if pick == left:
            left = left - 1 if accepted else -1
        else:
            right = right + 1 if accepted else len(segments)
    if total < min_seconds:
        return NoReference(
            f"only {total:.1f} s of this speaker's speech is around the segment; cloning a"
            f" voice needs {min_seconds:.0f} s"
        )
    parts = [segments[k] for k in chosen]
    return Reference(
        tuple(chosen),
        parts[0].start,
        parts[-1].end,
        " ".join(p.text.strip() for p in parts if p.text.strip()),
        np.concatenate([p.audio for p in parts]),
    )
