"""What every client command shares: exit codes, usage errors, standard input, audio files
out, and the terminal (is it one, how wide it is, tables)."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import sys
from collections.abc import Iterator
from typing import BinaryIO

from speechmesh.client.audio import read_bytes

OK, FAILED, USAGE = 0, 1, 2
#: Output audio formats (the --format choices).
AUDIO_FORMATS = ["wav", "mp3", "ogg", "flac", "pcm"]
#: Output audio formats by file extension.
EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "opus": "ogg", "mp3": "mp3"}
EXTENSIONS.update(pcm="pcm", raw="pcm")


class UsageError(Exception):
    """A mistake in the command line; the message says what to do."""


def isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def err(message: str) -> None:
    print(f"speechmesh: {message}", file=sys.stderr)


def hint(message: str) -> None:
    """A line under an error that says what to do."""
    print(f"  {message}", file=sys.stderr)


def input_bytes(source: str) -> bytes:
    """The bytes of a file argument, or of standard input for "-"."""
    if source == "-":
        return sys.stdin.buffer.read()
    return read_bytes(source)


def input_text(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    return text


def audio_format(out: str | None, explicit: str | None) -> str:
    """The format of audio written to `out`: `explicit`, else by its extension, else WAV."""
    if explicit:
        return explicit
    if out and out != "-":
        return EXTENSIONS.get(pathlib.Path(out).suffix.lower().lstrip("."), "wav")
    return "wav"


@contextlib.contextmanager
def audio_output(out: str) -> Iterator[BinaryIO]:
    """A binary stream for audio: the file `out` (closed afterwards), or standard output for
    "-" (flushed afterwards), which must not be a terminal."""
    if out == "-":
        if isatty(sys.stdout):
            raise UsageError(
                "will not write audio to the terminal: give --out FILE, or pipe the output"
                " (e.g. `| aplay` or `> speech.wav`)"
            )
        try:
            yield sys.stdout.buffer
        finally:
            sys.stdout.buffer.flush()
        return
    path = pathlib.Path(out)
    if path.parent and not path.parent.exists():
        raise UsageError(f"--out {out}: the folder {path.parent} does not exist")
    with path.open("wb") as stream:
        yield stream


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def fit(text: str) -> str:
    """The end of `text`, as much as fits on one terminal line."""
    width = shutil.get_terminal_size((80, 20)).columns - 1
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def table(rows: list[list[str]]) -> None:
    """Rows in columns as wide as their widest cell; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def memory(size: int) -> str:
    """A size in bytes for people: "512 B", "1.5 GiB"; "" for none."""
    if size <= 0:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
