"""Several short clips in one Whisper window: one encoder pass for all of them.

Whisper's encoder always sees a 30 s window, however short the audio: on a CPU that pass is most
of a short clip's cost, and batching does not shrink it (each row is a full window). Clips that
are decoded together (same options, same language) are laid one after another in a window with
a second of silence between them; the window is decoded once, with timestamps, its words are
timed by the cross-attention alignment, and each word goes back to the clip it was spoken in.
Whisper cuts segments at such gaps, and a clip's words are decoded with the clips before it as
context, which helps more than it hurts (the benchmark reports word error rates per
concurrency).

Whisper does not transcribe speech it believes goes on past the window: it stops with a lone
timestamp where that speech starts. Windows are therefore packed to `capacity` (less than the
window), and a clip the decode did not finish is decoded again alone (`unfinished`), so the
result is never worse than decoding each clip by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechmesh.asr.engines.base import Segment, Word

#: Silence between two clips of a window, seconds.
GAP_SECONDS = 1.0
#: How much of a 30 s window packing fills (the rest stays silent, see the module doc).
CAPACITY_SECONDS = 25.0


@dataclass(frozen=True)
class Placement:
    """Where one clip (`job`, its index in the batch) lies in a window, in seconds."""

    job: int
    start: float
    end: float


def pack(
    durations: list[float], capacity: float, gap: float = GAP_SECONDS
) -> list[list[Placement]]:
    """Windows of clips: first fit, longest first; a clip longer than `capacity` is alone."""
    order = sorted(range(len(durations)), key=lambda i: -durations[i])
    windows: list[list[Placement]] = []
    used: list[float] = []
    for job in order:
        length = durations[job]
        for w, placements in enumerate(windows):
            start = used[w] + gap
            if start + length <= capacity:
                placements.append(Placement(job, start, start + length))
                used[w] = start + length
                break
        else:
            windows.append([Placement(job, 0.0, length)])
            used.append(length)
    return windows


def window_audio(placements: list[Placement], clips: list[np.ndarray], rate: int) -> np.ndarray:
    """The window's samples: each clip at its place, silence between."""
    starts = [round(p.start * rate) for p in placements]
    length = max(at + len(clips[p.job]) for at, p in zip(starts, placements, strict=True))
    audio = np.zeros(length, dtype=np.float32)
    for at, p in zip(starts, placements, strict=True):
        audio[at : at + len(clips[p.job])] = clips[p.job]
    return audio


@dataclass
class TimedSegment:
    """A decoded segment of a window with its words (window times)."""

    segment: Segment
    words: list[Word]


def split(
    segments: list[TimedSegment], placements: list[Placement], resume_at: float | None
) -> tuple[dict[int, list[Segment]], list[int]]:
    """Each clip's segments (clip times, words attached), and the clips to decode again.

    A word belongs to the clip nearest its start (the alignment stretches a segment's last
    word over the silence after it, so its middle can fall in the next clip); a segment whose
    words fall in two clips is cut between them. `resume_at` is where the decode stopped short
    of the window's end (None when it finished): a clip that reaches past it is returned to be
    decoded alone, and none of its words are kept. So is a clip that got no words while others
    did: Whisper sometimes runs two clips that say the same thing into one segment, or skips a
    clip, and the clip alone is decoded right (silence alone costs one short decode).
    """
    unfinished = [p.job for p in placements if resume_at is not None and p.end > resume_at + 0.02]
    out: dict[int, list[Segment]] = {p.job: [] for p in placements if p.job not in unfinished}
    for timed in segments:
        groups: dict[int, list[Word]] = {}
        for word in timed.words:
            owner = _owner(placements, word.start)
            groups.setdefault(owner.job, []).append(word)
        if not timed.words:  # no words (no text to align): the segment's middle decides
            seg = timed.segment
            groups[_owner(placements, (seg.start + seg.end) / 2).job] = []
        for job, words in groups.items():
            if job not in out:
                continue
            place = next(p for p in placements if p.job == job)
            out[job].append(_piece(timed, words, place, whole=len(groups) == 1))
    if len(out) > 1 and any(out.values()):
        skipped = [job for job, pieces in out.items() if not pieces]
        unfinished += skipped
        for job in skipped:
            del out[job]
    return out, unfinished


def _owner(placements: list[Placement], t: float) -> Placement:
    def distance(p: Placement) -> float:
        return 0.0 if p.start <= t <= p.end else min(abs(t - p.start), abs(t - p.end))

    return min(placements, key=distance)


def _piece(timed: TimedSegment, words: list[Word], place: Placement, whole: bool) -> Segment:
    """The part of a segment that lies in one clip, in that clip's times."""
    length = place.end - place.start

    def local(t: float) -> float:
        return min(max(t - place.start, 0.0), length)

    seg = timed.segment
    if whole:
        start, end, text = local(seg.start), local(seg.end), seg.text
        probability = seg.probability
    else:
        start, end = local(words[0].start), local(words[-1].end)
        text = " ".join(w.text for w in words)
        probability = float(np.mean([w.probability for w in words]))
    moved = [Word(w.text, local(w.start), local(w.end), w.probability) for w in words]
    return Segment(text, start, max(end, start), probability, moved)
