"""What a service plugs into the job runner: one JobKind per method that starts a job.

A kind checks a request when the job is created (`check`: cheap, raises ApiError, nothing is
stored when it fails), runs it on a worker (`run`: at the batcher's lowest priority, reporting
progress through its JobContext), and renders its result as a raw body (`render`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import Message

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.operations.store import Progress


@dataclass
class Blob:
    """A result too big or too raw for the response message (audio), stored beside it."""

    data: bytes
    content_type: str


@dataclass
class JobOutcome:
    """What a finished job leaves: its response (packed into Operation.response) and blobs
    by key (e.g. "audio/0" for the first file's audio, "audio" for a synthesis)."""

    response: Message
    blobs: dict[str, Blob] = field(default_factory=dict)


class JobContext(Protocol):
    """What a running job sees of the runner."""

    #: The identity that created the job (uploads are read on its behalf).
    owner: str
    #: The batcher priority every decode of the job must use (PRIORITY_BACKGROUND).
    priority: int
    #: The job's progress; the kind updates it in place as it goes.
    progress: Progress

    async def read(self, source: ops_pb2.AudioInput) -> bytes:
        """The bytes of one input (inline, upload, file or allowed URL); an input that went
        away since the job was created raises ApiError (the file fails, not the job)."""
        ...


def source_label(source: ops_pb2.AudioInput, index: int) -> str:
    """How a result names its input: the upload name or URI, or "content[N]" (N counts the
    inline files only, from 0)."""
    kind = source.WhichOneof("source")
    if kind == "upload":
        return source.upload
    if kind == "uri":
        return source.uri
    return f"content[{index}]"


@dataclass
class JobKind:
    """One method that starts a job, e.g. speechmesh.asr.v1.AsrService/BatchRecognize."""

    #: "package.Service/Method", kept in the operation's metadata.
    method: str
    #: The request message class (stored serialized, parsed again on the worker).
    request_type: type[Message]
    #: The response message class (Operation.response).
    response_type: type[Message]
    #: Validates a request at creation (raises ApiError); returns the number of items
    #: (files, sentences) for the progress's `total_items`.
    check: Callable[[Message], int]
    #: Runs the job; raising ApiError fails the whole job with that status.
    run: Callable[[Message, JobContext], Awaitable[JobOutcome]]
    #: The result in one ResultFormat: (content type, bytes). Gets the response and a
    #: function that loads one blob by key (None when missing). Raises ApiError
    #: INVALID_ARGUMENT for a format or file index the result does not have.
    render: Callable[
        [Message, int, int, Callable[[str], Awaitable[Blob | None]]], Awaitable[tuple[str, bytes]]
    ]
    #: The inputs of a request (AudioInput messages) that the runner checks at creation and
    #: that `JobContext.read` reads; empty for text jobs.
    inputs: Callable[[Message], list[ops_pb2.AudioInput]] = lambda request: []
    #: Like `check`, for kinds whose check needs the creating identity or I/O (a stored voice
    #: must exist and be the caller's: BatchSynthesize): when set, it is what `validate`
    #: awaits, with the owner, instead of calling `check`.
    check_for_owner: Callable[[Message, str], Awaitable[int]] | None = None

    async def validate(self, request: Message, owner: str) -> int:
        """What the runner calls when a job is created by `owner`: `check_for_owner` when the
        kind has one, else `check`. Raises ApiError; returns the number of items."""
        if self.check_for_owner is not None:
            return await self.check_for_owner(request, owner)
        return self.check(request)
