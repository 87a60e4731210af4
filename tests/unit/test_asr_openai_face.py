"""speechmesh.asr.openai: OpenAI transcription and translation requests, their answers in every
response format, and the suite's model list."""

from __future__ import annotations

import dataclasses
import json

import pytest

from speechmesh.asr.engines.base import Segment, Word
from speechmesh.asr.openai import (
    OPTION_FIELDS,
    audio_request,
    language_name,
    model_ids,
    option_error,
    srt,
    transcription_body,
    vtt,
)
from speechmesh.asr.recognizer import Transcript
from speechmesh.runtime import errors
from speechmesh.runtime.openai import ALIASES
from tests.unit.forms import CONTENT_TYPE, WAV, form_body, violation


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
    for alias in ALIASES["asr"]:
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


# -- answers ---------------------------------------------------------------------------------


RESULT = Transcript(
    [
        Segment(
            "Go forward.",
            0.5,
            1.25,
            0.9,
            [Word("Go", 0.5, 0.8, 1.0), Word("forward.", 0.8, 1.25, 1.0)],
        ),
        Segment("Ten\n\nmeters.", 3661.0004, 3662.5, 0.0, [Word("Ten", 3661, 3662, 1.0)]),
    ],
    "en",
    1.0,
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
    assert language_name("fr") == "french"
    assert language_name("pt-BR") == "portuguese"
    assert language_name("xx") == "xx"
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


def test_engine_option_errors_name_the_form_field():
    for option, field in OPTION_FIELDS.items():
        error = option_error(option, "bad", "tiny.en")
        (detail,) = error.details
        assert detail.field_violations[0].field == field
    advice = option_error("task", "use RECOGNITION_TASK_TRANSCRIBE", "tiny.en")
    assert "RECOGNITION_TASK" not in advice.message
    assert "/v1/audio/transcriptions" in advice.message


# -- the suite's model list --------------------------------------------------------------------


def test_model_ids_list_this_service_then_its_peers_then_the_aliases_of_those_present():
    ids = model_ids(
        ["whisper-tiny", "whisper-1"], {"translate": ["seamless"], "tts": ["csm", "vits"]}
    )
    assert ids == [
        "whisper-tiny",
        "whisper-1",
        "seamless",
        "csm",
        "vits",
        *(alias for alias in ALIASES["asr"] if alias != "whisper-1"),
        *ALIASES["tts"],
    ]


def test_model_ids_without_peers_hold_no_tts_alias():
    """An alias means a service's default model: with no TTS answering, none is listed."""
    ids = model_ids(["whisper-tiny"], {"translate": ["seamless"]})
    assert ids == ["whisper-tiny", "seamless", *ALIASES["asr"]]
    assert not set(ALIASES["tts"]) & set(ids)
