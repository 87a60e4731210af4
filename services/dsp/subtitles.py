"""SubRip (SRT) and WebVTT subtitles of timed text, written one way for everyone: the CLI's
output, the OpenAI face's `srt` and `vtt` answers, and the results of long-running jobs.

A cue is (start, end, text), times in seconds. Its text is wrapped at `width` characters or,
with width None, kept on one line (a blank line would end a cue early either way); a cue whose
text is blank is left out, and one that would not last is shown for MIN_CUE_SECONDS.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

#: Subtitle lines are wrapped at this many characters (a common broadcast limit).
SUBTITLE_WIDTH = 42
#: How long a cue whose end is not after its start is shown, seconds.
MIN_CUE_SECONDS = 0.5
VTT_HEADER = "WEBVTT\n\n"
SRT_CONTENT_TYPE = "application/x-subrip"
VTT_CONTENT_TYPE = "text/vtt"

Cue = tuple[float, float, str]


def timestamp(seconds: float, separator: str = ".") -> str:
    """00:01:02.345 (WebVTT) or 00:01:02,345 (SRT, separator ",")."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _times(start: float, end: float, separator: str) -> str:
    end = end if end > start else start + MIN_CUE_SECONDS
    return f"{timestamp(start, separator)} --> {timestamp(end, separator)}"


def _body(text: str, width: int | None) -> str:
    if width is None:
        return " ".join(text.split())
    return "\n".join(textwrap.wrap(text, width)) or text.strip()


def srt_cue(number: int, start: float, end: float, text: str, width: int | None = SUBTITLE_WIDTH):
    """One SubRip cue, numbered `number` (from 1), with the blank line that ends it."""
    return f"{number}\n{_times(start, end, ',')}\n{_body(text, width)}\n\n"


def vtt_cue(start: float, end: float, text: str, width: int | None = SUBTITLE_WIDTH) -> str:
    """One WebVTT cue, with the blank line that ends it."""
    return f"{_times(start, end, '.')}\n{_body(text, width)}\n\n"


def _shown(cues: Iterable[Cue]) -> list[Cue]:
    return [(start, end, text) for start, end, text in cues if text.strip()]


def srt(cues: Iterable[Cue], width: int | None = SUBTITLE_WIDTH) -> str:
    """SubRip subtitles of `cues`, numbered from 1 (empty when none has text)."""
    return "".join(
        srt_cue(number, start, end, text, width)
        for number, (start, end, text) in enumerate(_shown(cues), 1)
    )


def vtt(cues: Iterable[Cue], width: int | None = SUBTITLE_WIDTH) -> str:
    """WebVTT subtitles of `cues`: the header, then the cues."""
    return VTT_HEADER + "".join(
        vtt_cue(start, end, text, width) for start, end, text in _shown(cues)
    )
