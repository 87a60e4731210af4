"""speechmesh.runtime.multipart: multipart/form-data bodies as OpenAI's clients send them."""

from __future__ import annotations

import pytest

from speechmesh.runtime import errors
from speechmesh.runtime.multipart import parse_multipart
from tests.unit.forms import BOUNDARY, CONTENT_TYPE, WAV, form_body, violation


def test_parses_text_fields_repeated_fields_and_files():
    body = form_body(
        ("model", "whisper-1"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
        ("prompt", "héllo\r\nworld"),
        ("file", WAV),
    )
    form = parse_multipart(CONTENT_TYPE, body)
    assert form.text("model") == "whisper-1"
    assert form.text("absent", "dflt") == "dflt"
    assert form.texts("timestamp_granularities[]") == ["word", "segment"]
    assert form.text("prompt") == "héllo\r\nworld"
    file = form.file("file")
    assert (file.filename, file.content_type, file.data) == ("speech.wav", "audio/wav", WAV)


def test_parses_what_the_openai_sdk_sends():
    """The `openai` package encodes forms with httpx2: the same bytes go through the parser."""
    httpx2 = pytest.importorskip("httpx2")
    request = httpx2.Request(
        "POST",
        "http://gateway/v1/audio/transcriptions",
        data={"model": "whisper-1", "timestamp_granularities[]": ["word", "segment"]},
        files={"file": ('my "talk" é.wav', WAV, "audio/x-wav")},
    )
    form = parse_multipart(request.headers["content-type"], request.read())
    assert form.text("model") == "whisper-1"
    assert form.texts("timestamp_granularities[]") == ["word", "segment"]
    assert form.file("file").data == WAV
    assert form.file("file").content_type == "audio/x-wav"
    assert form.file("file").filename.endswith("é.wav")


def test_preamble_epilogue_padding_quoted_boundary_and_defaults():
    body = (
        b"a preamble to ignore\r\n"
        + f"--{BOUNDARY}  \r\n".encode()  # transport padding after the delimiter
        + b'content-disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'
        + b"abc\r\n"
        + f"--{BOUNDARY}--\r\nan epilogue".encode()
    )
    form = parse_multipart(f'multipart/form-data; boundary="{BOUNDARY}"', body)
    # No Content-Type on a file part: application/octet-stream (RFC 7578).
    assert form.file("file").content_type == "application/octet-stream"
    assert form.file("file").data == b"abc"


def test_rfc2231_filename():
    body = (
        f"--{BOUNDARY}\r\n".encode()
        + b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''%C3%A9t%C3%A9.wav\r\n"
        + b"\r\nabc\r\n"
        + f"--{BOUNDARY}--\r\n".encode()
    )
    assert parse_multipart(CONTENT_TYPE, body).file("file").filename == "été.wav"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("", b""),
        ("multipart/form-data", form_body(("model", "x"))),  # no boundary
        ("multipart/form-data; boundary=other", form_body(("model", "x"))),
        (CONTENT_TYPE, form_body(("model", "x"))[:-8]),  # cut before the close delimiter
        (CONTENT_TYPE, f"--{BOUNDARY}\r\nname: x\r\n\r\nv\r\n--{BOUNDARY}--".encode()),
        (CONTENT_TYPE, f"--{BOUNDARY}garbage\r\n".encode()),
    ],
)
def test_malformed_bodies_are_invalid_argument_naming_the_content_type(content_type, body):
    with pytest.raises(errors.ApiError) as error:
        parse_multipart(content_type, body)
    assert violation(error) == "content_type"


def test_limits_and_text_encoding():
    with pytest.raises(errors.ApiError) as error:
        parse_multipart(CONTENT_TYPE, form_body(("prompt", "x" * 100)), max_field_bytes=99)
    assert violation(error) == "prompt"
    assert "at most 99" in error.value.message
    many = form_body(*[("f", "v")] * 5)
    with pytest.raises(errors.ApiError) as error:
        parse_multipart(CONTENT_TYPE, many, max_parts=4)
    assert violation(error) == "content_type"
    latin1 = form_body(("prompt", "x")).replace(b"\r\n\r\nx", b"\r\n\r\n\xe9")
    with pytest.raises(errors.ApiError) as error:
        parse_multipart(CONTENT_TYPE, latin1)
    assert violation(error) == "prompt"
    # A file part has no size limit of its own (the request size bounds it).
    big = parse_multipart(CONTENT_TYPE, form_body(("file", bytes(1 << 20))), max_field_bytes=99)
    assert len(big.file("file").data) == 1 << 20


def test_form_accessors_refuse_missing_repeated_and_misplaced_values():
    form = parse_multipart(
        CONTENT_TYPE, form_body(("model", "a"), ("model", "b"), ("file", "not a file"))
    )
    with pytest.raises(errors.ApiError) as error:
        form.text("model")
    assert violation(error) == "model"
    assert "2 times" in error.value.message
    with pytest.raises(errors.ApiError) as error:
        form.file("file")
    assert "came as a text field" in error.value.message
    with pytest.raises(errors.ApiError) as error:
        form.file("audio")
    assert violation(error) == "audio"
    two_files = parse_multipart(CONTENT_TYPE, form_body(("file", b"a"), ("file", b"b")))
    with pytest.raises(errors.ApiError):
        two_files.file("file")
    with pytest.raises(errors.ApiError):
        two_files.text("file")
