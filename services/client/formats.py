"""Transcript output: plain text, JSON, SRT and WebVTT subtitles (cues written by
speechmesh.dsp.subtitles); a terminal progress bar."""

from __future__ import annotations

import json
import shutil
import time
from typing import TextIO

from speechmesh.client.types import Segment, Transcript, Word
from speechmesh.dsp.subtitles import VTT_HEADER, srt_cue, vtt_cue


def _cues(segment: Segment, words: bool) -> list[tuple[float, float, str]]:
    if words and segment.words:
        return [(w.start, w.end, w.word) for w in segment.words]
    return [(segment.start, segment.end, segment.text)]


class SubtitleWriter:
    """Writes SRT or WebVTT cues as segments come (one cue per segment, or per word)."""

    def __init__(self, out: TextIO, kind: str, words: bool = False):
        self.out = out
        self.kind = kind
        self.words = words
        self.index = 0
        if kind == "vtt":
            out.write(VTT_HEADER)

    def add(self, segment: Segment) -> None:
        for start, end, text in _cues(segment, self.words):
            if not text.strip():
                continue
            self.index += 1
            if self.kind == "srt":
                self.out.write(srt_cue(self.index, start, end, text.strip()))
            else:
                self.out.write(vtt_cue(start, end, text.strip()))
        self.out.flush()


def words_text(words: list[Word]) -> str:
    return "\n".join(f"  {w.start:7.2f} {w.end:7.2f}  {w.word}" for w in words)


def write_transcript(out: TextIO, transcript: Transcript, kind: str, words: bool) -> None:
    """A whole transcript in one of the formats: text, json, srt, vtt."""
    if kind == "json":
        out.write(json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    if kind in ("srt", "vtt"):
        writer = SubtitleWriter(out, kind, words)
        for segment in transcript.segments:
            writer.add(segment)
        return
    for segment in transcript.segments:
        if segment.text:
            out.write(segment.text + "\n")
        if words and segment.words:
            out.write(words_text(segment.words) + "\n")


class ProgressBar:
    """`label [#####-----]  12.0/60.0 s  20%  3.1x real time`, redrawn in place on a terminal
    (standard error); cleared when closed."""

    def __init__(self, out: TextIO, label: str):
        self.out = out
        self.label = label
        self.started = time.monotonic()
        self.drawn = False

    def update(self, done: float, total: float) -> None:
        width = shutil.get_terminal_size((80, 20)).columns
        fraction = done / total if total > 0 else 1.0
        elapsed = time.monotonic() - self.started
        speed = f"  {done / elapsed:.1f}x real time" if done > 0 and elapsed > 0 else ""
        tail = f" {done:6.1f}/{total:.1f} s audio {fraction:4.0%}{speed}"
        room = max(10, min(40, width - len(self.label) - 48))  # steady while the tail changes
        filled = int(room * fraction)
        line = f"{self.label} [{'#' * filled}{'-' * (room - filled)}]{tail}"
        self.out.write("\r" + line[: width - 1])
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.out.write("\r\033[K")
            self.out.flush()
