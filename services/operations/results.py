"""A finished job's result as a raw body (GetOperationResult): the response as JSON, a text,
subtitles; and the INVALID_ARGUMENT for a format or a file the result does not have."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.dsp import subtitles
from speechmesh.runtime import errors

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
SRT = subtitles.SRT_CONTENT_TYPE + "; charset=utf-8"
VTT = subtitles.VTT_CONTENT_TYPE + "; charset=utf-8"

F = TypeVar("F")


def format_name(fmt: int) -> str:
    return ops_pb2.ResultFormat.Name(fmt) if fmt in ops_pb2.ResultFormat.values() else str(fmt)


def json_body(message: Message) -> tuple[str, bytes]:
    """The message as JSON, as the gateway prints it (proto field names, defaults shown)."""
    text = json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        ensure_ascii=False,
    )
    return JSON, (text + "\n").encode()


def text_body(text: str) -> tuple[str, bytes]:
    return TEXT, (text + "\n").encode()


def subtitles_body(fmt: int, cues: Iterable[subtitles.Cue]) -> tuple[str, bytes]:
    """SRT or VTT subtitles of `cues` (fmt RESULT_FORMAT_SRT or RESULT_FORMAT_VTT)."""
    if fmt == ops_pb2.RESULT_FORMAT_SRT:
        return SRT, subtitles.srt(cues).encode()
    return VTT, subtitles.vtt(cues).encode()


def seconds(value) -> float:
    """A google.protobuf.Duration in seconds."""
    return value.seconds + value.nanos / 1e9


def no_format(fmt: int, what: str) -> errors.ApiError:
    """INVALID_ARGUMENT naming `format`: `what` (e.g. "a recognition result") has no such form."""
    return errors.invalid_argument("format", f"is {format_name(fmt)}; {what}")


def file_result(results: Sequence[F], file_index: int) -> F:
    """The result of file `file_index`; INVALID_ARGUMENT naming `file_index` past the last file
    or for a file that failed (one whose result has its `error` set)."""
    if not 0 <= file_index < len(results):
        raise errors.invalid_argument(
            "file_index",
            f"is {file_index}; the job has {len(results)} file(s), numbered from 0",
        )
    result = results[file_index]
    if result.HasField("error"):
        raise errors.invalid_argument(
            "file_index",
            f"file {file_index} ({result.source}) failed and has no result: {result.error.message}",
        )
    return result
