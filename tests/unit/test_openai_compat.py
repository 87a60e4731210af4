"""openai_compat: multipart parsing, OpenAI request validation, response formats, model list."""

from __future__ import annotations

import dataclasses
import json

import grpc
import pytest
from google.rpc import error_details_pb2

from speechmesh.runtime import errors, openai_compat
from speechmesh.runtime.openai_compat import (
    audio_request,
    parse_json_body,
    parse_multipart,
    srt,
    transcription_body,
    vtt,
)

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


# -- multipart ---------------------------------------------------------------------------------


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


# -- requests ------------------------------------------------------------------------------------


def test_transcription_request_defaults_and_aliases():
    asked = audio_request(CONTENT_TYPE, form_body(("file", WAV)), translate=False)
    assert asked.model == ""
    assert (asked.task, asked.language, asked.prompt, asked.temperature) == (
        "transcribe",
        "",
        "",
        0,
    )
    assert asked.response_format == "json"
    assert asked.granularities == ("segment",)
    assert not asked.word_timestamps
    for alias in openai_compat.ASR_ALIASES:
        body = form_body(("model", alias), ("file", WAV))
        assert audio_request(CONTENT_TYPE, body, translate=False).model == ""
    body = form_body(("model", "openai/whisper-large-v3"), ("file", WAV))
    assert audio_request(CONTENT_TYPE, body, translate=False).model == "openai/whisper-large-v3"


def test_transcription_request_fields():
    body = form_body(
        ("model", "whisper-1"),
        ("language", " fr "),
        ("prompt", "Bonjour."),
        ("temperature", "0.4"),
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "word"),
        ("include[]", "logprobs"),  # a later OpenAI field: ignored
        ("stream", "false"),
        ("file", WAV),
    )
    asked = audio_request(CONTENT_TYPE, body, translate=False)
    assert (asked.language, asked.prompt, asked.temperature) == ("fr", "Bonjour.", 0.4)
    assert asked.granularities == ("word",)
    assert asked.word_timestamps
    # Word times only where the answer shows them.
    text = dataclasses.replace(asked, response_format="srt")
    assert not text.word_timestamps


def test_translation_request_ignores_language_and_granularities():
    body = form_body(
        ("language", "xx-not-checked"),
        ("timestamp_granularities[]", "bogus"),
        ("file", WAV),
    )
    asked = audio_request(CONTENT_TYPE, body, translate=True)
    assert (asked.task, asked.language, asked.granularities) == ("translate", "", ("segment",))


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ((("model", "whisper-1"),), "file"),
        ((("file", b""),), "file"),
        ((("response_format", "diarized_json"), ("file", WAV)), "response_format"),
        ((("temperature", "hot"), ("file", WAV)), "temperature"),
        ((("temperature", "1.5"), ("file", WAV)), "temperature"),
        ((("temperature", "nan"), ("file", WAV)), "temperature"),
        ((("stream", "true"), ("file", WAV)), "stream"),
        ((("timestamp_granularities[]", "sentence"), ("file", WAV)), "timestamp_granularities[]"),
    ],
)
def test_bad_requests_name_the_form_field(parts, field):
    with pytest.raises(errors.ApiError) as error:
        audio_request(CONTENT_TYPE, form_body(*parts), translate=False)
    assert violation(error) == field


# -- answers -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Word:
    text: str
    start: float
    end: float


@dataclasses.dataclass
class Segment:
    text: str
    start: float
    end: float
    probability: float
    words: list[Word]


@dataclasses.dataclass
class Transcript:
    segments: list[Segment]
    language: str
    duration: float

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


RESULT = Transcript(
    [
        Segment("Go forward.", 0.5, 1.25, 0.9, [Word("Go", 0.5, 0.8), Word("forward.", 0.8, 1.25)]),
        Segment("Ten\n\nmeters.", 3661.0004, 3662.5, 0.0, [Word("Ten", 3661, 3662)]),
    ],
    "en",
    3663.2,
)


def answer(response_format: str, *granularities: str, translate: bool = False):
    parts = [("response_format", response_format), ("temperature", "0.2")]
    parts += [("timestamp_granularities[]", g) for g in granularities]
    asked = audio_request(CONTENT_TYPE, form_body(*parts, ("file", WAV)), translate=translate)
    return transcription_body(RESULT, asked)


def test_json_and_text():
    content_type, body = answer("json")
    assert content_type == "application/json"
    assert json.loads(body) == {
        "text": "Go forward. Ten\n\nmeters.",
        "usage": {"type": "duration", "seconds": 3664},
    }
    assert answer("text") == ("text/plain; charset=utf-8", b"Go forward. Ten\n\nmeters.\n")


def test_verbose_json_with_segments_and_words():
    content_type, body = answer("verbose_json", "word", "segment")
    assert content_type == "application/json"
    value = json.loads(body)
    assert (value["task"], value["language"], value["duration"]) == (
        "transcribe",
        "english",
        3663.2,
    )
    first, second = value["segments"]
    assert first == {
        "id": 0,
        "seek": 50,
        "start": 0.5,
        "end": 1.25,
        "text": "Go forward.",
        "tokens": [],
        "temperature": 0.2,
        "avg_logprob": -0.1054,
        "compression_ratio": first["compression_ratio"],
        "no_speech_prob": 0.0,
    }
    # Probability 0 gives a very low, finite log-probability (JSON has no infinity).
    assert second["avg_logprob"] < -20 and second["start"] == 3661.0
    assert value["words"] == [
        {"word": "Go", "start": 0.5, "end": 0.8},
        {"word": "forward.", "start": 0.8, "end": 1.25},
        {"word": "Ten", "start": 3661.0, "end": 3662.0},
    ]
    # Words only: no segments; nothing asked: segments only.
    assert "segments" not in json.loads(answer("verbose_json", "word")[1])
    plain = json.loads(answer("verbose_json")[1])
    assert "words" not in plain and len(plain["segments"]) == 2


def test_verbose_json_language_names():
    assert openai_compat.language_name("fr") == "french"
    assert openai_compat.language_name("pt-BR") == "portuguese"
    assert openai_compat.language_name("xx") == "xx"
    # A translation is always English.
    value = json.loads(answer("verbose_json", translate=True)[1])
    assert (value["task"], value["language"]) == ("translate", "english")


def test_srt_and_vtt():
    assert srt(RESULT.segments) == (
        "1\n00:00:00,500 --> 00:00:01,250\nGo forward.\n\n"
        "2\n01:01:01,000 --> 01:01:02,500\nTen meters.\n\n"
    )
    assert vtt(RESULT.segments) == (
        "WEBVTT\n\n"
        "00:00:00.500 --> 00:00:01.250\nGo forward.\n\n"
        "01:01:01.000 --> 01:01:02.500\nTen meters.\n\n"
    )
    assert answer("srt")[0] == answer("vtt")[0] == "text/plain; charset=utf-8"
    assert srt([]) == "" and vtt([]) == "WEBVTT\n\n"


# -- models ----------------------------------------------------------------------------------


def test_model_list_and_lookup():
    ids = openai_compat.model_ids(["tiny", "whisper-1"])
    assert ids[:2] == ["tiny", "whisper-1"]
    assert set(ids) == {"tiny", *openai_compat.ASR_ALIASES, *openai_compat.TTS_ALIASES}
    content_type, body = openai_compat.models_body(ids, 1700000000)
    assert content_type == "application/json"
    value = json.loads(body)
    assert value["object"] == "list"
    assert value["data"][0] == {
        "id": "tiny",
        "object": "model",
        "created": 1700000000,
        "owned_by": "speechmesh",
    }
    assert json.loads(openai_compat.model_body("tts-1", ids, 5)[1])["id"] == "tts-1"
    with pytest.raises(errors.ApiError) as error:
        openai_compat.model_body("gpt-5", ids, 5)
    assert error.value.code == grpc.StatusCode.NOT_FOUND


# -- the speech route's pieces (TTS) ---------------------------------------------------------


def test_tts_aliases_formats_and_json_bodies():
    assert [openai_compat.resolve_tts_model(m) for m in (*openai_compat.TTS_ALIASES, "")] == [
        ""
    ] * 4
    assert openai_compat.resolve_tts_model("sesame/csm-1b") == "sesame/csm-1b"
    assert openai_compat.speech_format("") == "mp3"
    assert openai_compat.speech_format("opus") == "ogg_opus"
    with pytest.raises(errors.ApiError) as error:
        openai_compat.speech_format("aac")
    assert violation(error) == "response_format"
    assert parse_json_body("application/json; charset=utf-8", b'{"input": "hi"}') == {"input": "hi"}
    for content_type, body in (("text/plain", b"{}"), ("application/json", b"[1]"), ("", b"{")):
        with pytest.raises(errors.ApiError) as error:
            parse_json_body(content_type, body)
        assert violation(error) == "content_type"


def test_engine_option_errors_name_the_form_field():
    for option, field in openai_compat.OPTION_FIELDS.items():
        error = openai_compat.option_error(option, "bad", "tiny.en")
        (detail,) = error.details
        assert detail.field_violations[0].field == field
    advice = openai_compat.option_error("task", "use RECOGNITION_TASK_TRANSCRIBE", "tiny.en")
    assert "RECOGNITION_TASK" not in advice.message
    assert "/v1/audio/transcriptions" in advice.message
