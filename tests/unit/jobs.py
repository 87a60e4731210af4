"""Running job kinds (speechmesh.operations.job) directly, as the runner would, in the domain
unit tests: a JobContext that reads inline content and records every step of the progress, and
a spy on the priorities a model's batcher is given."""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.inference.batcher import PRIORITY_BACKGROUND
from speechmesh.operations.job import Blob
from speechmesh.operations.store import Progress
from speechmesh.runtime import errors


class RecordedProgress(Progress):
    """A Progress that keeps a snapshot of itself after every change."""

    def __setattr__(self, name, value) -> None:
        super().__setattr__(name, value)
        history = self.__dict__.setdefault("history", [])
        if all(f.name in self.__dict__ for f in dataclasses.fields(Progress)):
            history.append(
                Progress(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Progress)})
            )


class InlineContext:
    """A JobContext of the test: reads inline content; any other source went away."""

    def __init__(self, owner: str = "", total_items: int = 0):
        self.owner = owner
        self.priority = PRIORITY_BACKGROUND
        self.progress = RecordedProgress(total_items=total_items)
        self.reads: list[str] = []

    async def read(self, source: ops_pb2.AudioInput) -> bytes:
        kind = source.WhichOneof("source")
        self.reads.append(kind or "")
        if kind != "content":
            raise errors.failed_precondition(
                f"{source.upload or source.uri} is gone; upload it again", "UPLOAD_EXPIRED"
            )
        return source.content


def assert_progress_grows_to_done(progress: RecordedProgress, items: int) -> None:
    """Every figure only grows, and the last step is 100 % of `items` items."""
    steps = progress.history
    assert steps, "no progress was reported"
    for before, after in itertools.pairwise(steps):
        assert after.percent >= before.percent
        assert after.processed_audio_s >= before.processed_audio_s
        assert after.processed_items >= before.processed_items
    last = steps[-1]
    assert last.percent == pytest.approx(100.0)
    assert last.processed_items == last.total_items == items


class PrioritySpy:
    """Wraps a batcher's submit: records the priority of every job and the most in flight."""

    def __init__(self, batcher, monkeypatch):
        self.priorities: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        submit = batcher.submit

        async def spy(job, *, priority):
            self.priorities.append(priority)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                return await submit(job, priority=priority)
            finally:
                self.in_flight -= 1

        monkeypatch.setattr(batcher, "submit", spy)


def blob_loader(blobs: dict[str, Blob]):
    async def load(key: str) -> Blob | None:
        return blobs.get(key)

    return load


_SRT_CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n(.+)", re.S
)
_VTT_CUE = re.compile(
    r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)\n(.+)", re.S
)


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def srt_cues(body: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue of well-formed SubRip subtitles, numbered 1, 2, ..."""
    if not body:
        return []
    assert body.endswith("\n\n")
    cues = []
    for number, block in enumerate(body[:-2].split("\n\n"), 1):
        match = _SRT_CUE.fullmatch(block)
        assert match, block
        assert int(match[1]) == number
        cues.append((_seconds(*match.groups()[1:5]), _seconds(*match.groups()[5:9]), match[10]))
    return cues


def vtt_cues(body: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue of well-formed WebVTT subtitles."""
    assert body.startswith("WEBVTT\n\n")
    body = body[len("WEBVTT\n\n") :]
    if not body:
        return []
    assert body.endswith("\n\n")
    cues = []
    for block in body[:-2].split("\n\n"):
        match = _VTT_CUE.fullmatch(block)
        assert match, block
        cues.append((_seconds(*match.groups()[0:4]), _seconds(*match.groups()[4:8]), match[9]))
    return cues


def field_of(error: pytest.ExceptionInfo | errors.ApiError) -> str:
    """The field an INVALID_ARGUMENT ApiError names."""
    value = error.value if isinstance(error, pytest.ExceptionInfo) else error
    assert isinstance(value, errors.ApiError)
    assert value.code.name == "INVALID_ARGUMENT", value.message
    (detail,) = value.details
    return detail.field_violations[0].field
