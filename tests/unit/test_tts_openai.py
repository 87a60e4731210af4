"""The TTS service's OpenAI face: /v1/audio/speech bodies, OpenAI's voice names and formats, and
the speech it answers, straight from the domain (tiny random CSM and VITS, no server)."""

from __future__ import annotations

import io
import json

import grpc
import pytest
import soundfile as sf

from speechmesh.runtime import errors
from speechmesh.runtime.openai import ALIASES
from speechmesh.tts import openai
from speechmesh.tts.resolver import VoiceRequest, VoiceResolver
from speechmesh.tts.speaker import Speaker
from speechmesh.tts.voice_library import NewVoice, VoiceLibrary
from tests.service.test_tts_service import REFERENCE
from tests.unit.forms import violation


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


@pytest.fixture(scope="module")
def speaker(tiny_tts_models) -> Speaker:
    models = tiny_tts_models
    return Speaker(models, models.settings, VoiceResolver(models, models.settings))


@pytest.fixture(scope="module")
def vits(tiny_tts_models):
    (model,) = [m for m in tiny_tts_models.models.values() if m.engine.family == "vits"]
    return model


def test_aliases_and_formats():
    for alias in (*ALIASES["tts"], "", " "):
        assert openai.speech_request("", body(input="Hi.", model=alias)).model == ""
    named = openai.speech_request("application/json", body(input="Hi.", model="sesame/csm-1b"))
    assert named.model == "sesame/csm-1b"
    assert openai.speech_format("") == "mp3"
    assert openai.speech_format("opus") == "ogg_opus"
    with pytest.raises(errors.ApiError) as error:
        openai.speech_format("aac")
    assert violation(error) == "response_format"


def test_speech_request_defaults():
    asked = openai.speech_request("application/json", body(input="Hello.", voice=" jane "))
    assert asked == openai.SpeechRequest("Hello.", "", "jane", "mp3", 1.0)
    asked = openai.speech_request(
        "", body(input="Hi.", response_format="pcm", speed=2, instructions="ignored")
    )
    assert (asked.encoding, asked.speed, asked.voice) == ("pcm", 2.0, "")


@pytest.mark.parametrize(
    "content_type, data, field",
    [
        ("text/plain", body(input="Hi."), "content_type"),
        ("application/json", b"[1]", "content_type"),
        ("application/json", b"{", "content_type"),
        ("", body(), "input"),
        ("", body(input="  "), "input"),
        ("", body(input="Hi.", voice=3), "voice"),
        ("", body(input="Hi.", speed=5), "speed"),
        ("", body(input="Hi.", speed=True), "speed"),
        ("", body(input="Hi.", speed="fast"), "speed"),
        ("", body(input="Hi.", stream_format="sse"), "stream_format"),
        ("", body(input="Hi.", response_format="aac"), "response_format"),
    ],
)
def test_bad_bodies_name_the_parameter(content_type, data, field):
    with pytest.raises(errors.ApiError) as error:
        openai.speech_request(content_type, data)
    assert violation(error) == field


async def test_voice_names(speaker, vits):
    resolver = speaker.resolver
    await VoiceLibrary(resolver).create(NewVoice("jane", "This is my voice.", REFERENCE), "ann")
    preset = vits.engine.preset_voices[0].name
    cases = [
        ("", "", VoiceRequest()),
        ("alloy", "", VoiceRequest()),
        ("jane", "", VoiceRequest(voice="voices/jane")),
        ("voices/jane", "", VoiceRequest(voice="voices/jane")),
        (preset, vits.name, VoiceRequest(model=vits.name, preset=preset)),
    ]
    for voice, model, expected in cases:
        assert await openai.voice_request(resolver, model, voice, "ann") == expected, voice
    # Another owner's voice is not there for them: a name like any other.
    with pytest.raises(errors.ApiError) as raised:
        await openai.voice_request(resolver, "", "jane", "ben")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert "neither a stored voice nor a preset" in raised.value.message
    await VoiceLibrary(resolver).delete("voices/jane", "ann")


async def test_create_speech_answers_openais_formats(speaker, vits):
    asked = openai.speech_request("", body(input="Hello there.", voice="nova"))
    content_type, data = await openai.create_speech(speaker, asked, "")
    assert content_type == "audio/mpeg" and len(data) > 100
    asked = openai.speech_request(
        "", body(input="Hi.", model=vits.name, response_format="pcm", speed=1.5)
    )
    content_type, data = await openai.create_speech(speaker, asked, "")
    assert content_type == f"audio/pcm;rate={openai.PCM_RATE}" and len(data) % 2 == 0
    asked = openai.speech_request("", body(input="Hi.", response_format="wav"))
    content_type, data = await openai.create_speech(speaker, asked, "")
    assert content_type == "audio/wav"
    assert sf.info(io.BytesIO(data)).samplerate == speaker.models.default.engine.sample_rate


async def test_create_speech_errors_name_openais_parameters(speaker):
    limit = speaker.settings.max_text_characters
    asked = openai.speech_request("", body(input="a" * (limit + 1)))
    with pytest.raises(errors.ApiError) as error:
        await openai.create_speech(speaker, asked, "")
    assert violation(error) == "input"
    asked = openai.speech_request("", body(input="Hi.", model="nope"))
    with pytest.raises(errors.ApiError) as raised:
        await openai.create_speech(speaker, asked, "")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
