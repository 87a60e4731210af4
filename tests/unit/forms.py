"""multipart/form-data bodies and error checks shared by the unit tests of the OpenAI faces."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from speechmesh.runtime import errors

BOUNDARY = "b0undary-7f"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
WAV = b"RIFF\x00\x01\r\n--b0undary-7\r\n\xff\xfe--" + bytes(range(256))  # CRLFs and dashes inside


def form_body(*parts: tuple[str, str | bytes], filename: str = "speech.wav") -> bytes:
    """A multipart body: text parts as they are, bytes parts as files."""
    out = b""
    for name, value in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        if isinstance(value, bytes):
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: audio/wav\r\n\r\n"
            ).encode() + value
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()
        out += b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def violation(error: pytest.ExceptionInfo) -> str:
    """The field an INVALID_ARGUMENT ApiError names."""
    assert isinstance(error.value, errors.ApiError)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    (detail,) = error.value.details
    assert isinstance(detail, error_details_pb2.BadRequest)
    return detail.field_violations[0].field
