"""The ASR service's OpenAI-compatible RPCs in-process: every response format, translations,
the suite's model list (with real translate and TTS services as peers), and errors that name the
form field. Shapes on the tiny random checkpoint;
words with the real whisper-tiny.en weights (../shared)."""

from __future__ import annotations

import io
import json
import re

import grpc
import numpy as np
import pytest
import soundfile as sf
from google.api import httpbody_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from structlog.testing import capture_logs

from speechmesh.asr.v1 import asr_pb2
from speechmesh.runtime.openai import ALIASES
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.asr_client import stub
from tests.conftest import AUDIO, requires_shared, running_asr
from tests.servers import free_port

RATE = 16000
GOFORWARD = AUDIO / "goforward.wav"  # "go forward ten meters"
BOUNDARY = "speechmesh-test-boundary"
SRT_TIME = r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d"


def tone_wav(seconds: float = 1.5) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, format="WAV")
    return out.getvalue()


def upload(audio: bytes, *fields: tuple[str, str]) -> httpbody_pb2.HttpBody:
    """The HttpBody Envoy hands over for a multipart upload of `audio` and `fields`."""
    body = b""
    for name, value in fields:
        body += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    body += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    body += audio + f"\r\n--{BOUNDARY}--\r\n".encode()
    return httpbody_pb2.HttpBody(
        content_type=f"multipart/form-data; boundary={BOUNDARY}", data=body
    )


async def transcribe(channel, audio: bytes, *fields, translate: bool = False):
    rpc = stub(channel).CreateTranslation if translate else stub(channel).CreateTranscription
    return await rpc(upload(audio, *fields), timeout=60)


async def bad_request(call) -> tuple[grpc.StatusCode, str]:
    """(code, field of the first BadRequest violation or '') of a failing call."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    status = rpc_status.from_call(caught.value)
    field = ""
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                field = bad.field_violations[0].field
    return caught.value.code(), field


# -- tiny random checkpoint: shapes ------------------------------------------------------------


async def test_json_is_the_default(tiny_asr):
    _, channel = tiny_asr
    reply = await transcribe(channel, tone_wav(), ("model", "whisper-1"))
    assert reply.content_type == "application/json"
    body = json.loads(reply.data)
    assert set(body) == {"text", "usage"}
    assert isinstance(body["text"], str)
    assert body["usage"] == {"type": "duration", "seconds": 2}


async def test_verbose_json_with_word_and_segment_times(tiny_asr):
    _, channel = tiny_asr
    reply = await transcribe(
        channel,
        tone_wav(),
        ("response_format", "verbose_json"),
        ("language", "en"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    )
    assert reply.content_type == "application/json"
    body = json.loads(reply.data)
    assert (body["task"], body["language"], body["duration"]) == ("transcribe", "english", 1.5)
    assert isinstance(body["segments"], list) and isinstance(body["words"], list)
    for segment in body["segments"]:
        assert set(segment) >= {"id", "seek", "start", "end", "text", "tokens", "avg_logprob"}
        assert 0 <= segment["start"] <= segment["end"] <= 1.5
    for word in body["words"]:
        assert set(word) == {"word", "start", "end"}
    # Segment granularity alone: no words.
    plain = json.loads(
        (await transcribe(channel, tone_wav(), ("response_format", "verbose_json"))).data
    )
    assert "segments" in plain and "words" not in plain


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
async def test_text_formats(tiny_asr, response_format):
    _, channel = tiny_asr
    reply = await transcribe(channel, tone_wav(), ("response_format", response_format))
    assert reply.content_type == "text/plain; charset=utf-8"
    text = reply.data.decode()
    if response_format == "text":
        assert text.endswith("\n")
    elif response_format == "vtt":
        assert text.startswith("WEBVTT\n\n")
    else:
        cues = [cue for cue in text.split("\n\n") if cue]
        for number, cue in enumerate(cues, 1):
            lines = cue.split("\n")
            assert lines[0] == str(number) and re.fullmatch(SRT_TIME, lines[1])


async def test_translation_to_english(tiny_asr):
    _, channel = tiny_asr
    reply = await transcribe(
        channel, tone_wav(), ("response_format", "verbose_json"), translate=True
    )
    body = json.loads(reply.data)
    assert (body["task"], body["language"]) == ("translate", "english")


async def test_model_names_and_aliases(tiny_asr, tiny_whisper):
    _, channel = tiny_asr
    for name in (*ALIASES["asr"], str(tiny_whisper)):
        reply = await transcribe(channel, tone_wav(0.5), ("model", name))
        assert reply.content_type == "application/json"
    code, _ = await bad_request(transcribe(channel, tone_wav(0.5), ("model", "tts-1")))
    assert code == grpc.StatusCode.NOT_FOUND


async def listed(channel) -> list[str]:
    """The ids GET /v1/models lists."""
    reply = await stub(channel).ListOpenAiModels(asr_pb2.ListOpenAiModelsRequest(), timeout=10)
    assert reply.content_type == "application/json"
    body = json.loads(reply.data)
    assert body["object"] == "list"
    return [model["id"] for model in body["data"]]


async def test_models_list_and_lookup(tiny_asr, tiny_whisper):
    """Without peers: this service's models and the ASR aliases (no TTS answers for tts-1)."""
    _, channel = tiny_asr
    assert await listed(channel) == [tiny_whisper.name, *ALIASES["asr"]]
    reply = await stub(channel).ListOpenAiModels(asr_pb2.ListOpenAiModelsRequest(), timeout=10)
    body = json.loads(reply.data)
    assert {model["owned_by"] for model in body["data"]} == {"speechmesh"}
    assert all(isinstance(model["created"], int) for model in body["data"])
    one = await stub(channel).GetOpenAiModel(
        asr_pb2.GetOpenAiModelRequest(model="whisper-1"), timeout=10
    )
    assert json.loads(one.data)["id"] == "whisper-1"
    code, _ = await bad_request(
        stub(channel).GetOpenAiModel(asr_pb2.GetOpenAiModelRequest(model="gpt-5"), timeout=10)
    )
    assert code == grpc.StatusCode.NOT_FOUND


def dead_address() -> str:
    """An address nothing listens on."""
    return f"127.0.0.1:{free_port()}"


async def test_models_of_the_whole_suite(tiny_whisper, tiny_translate, tiny_tts):
    """With translate and TTS as peers (SPEECHMESH_ASR_PEERS), /v1/models lists every model the
    suite serves, then the aliases of ASR and TTS; a peer that is down is logged and left out,
    never failing the list."""
    translate_host, translate_channel = tiny_translate
    tts_host, tts_channel = tiny_tts
    translate_api = translate_pb2_grpc.TranslateServiceStub(translate_channel)
    translations = await translate_api.ListModels(translate_pb2.ListModelsRequest(), timeout=10)
    tts_api = tts_pb2_grpc.TtsServiceStub(tts_channel)
    voices = await tts_api.ListModels(tts_pb2.ListModelsRequest(), timeout=10)
    translate_models = [model.name for model in translations.models]
    tts_models = [model.name for model in voices.models]
    assert len(translate_models) == len(tts_models) == 2  # Seamless and NLLB; CSM and VITS
    translate_peer = f"translate=127.0.0.1:{translate_host.port}"
    tts_peer = f"tts=127.0.0.1:{tts_host.port}"

    async with running_asr(
        tiny_whisper, engine="transformers", peers=f"{translate_peer},{tts_peer}"
    ) as (_, channel):
        ids = await listed(channel)
        assert ids == [
            tiny_whisper.name,
            *translate_models,
            *tts_models,
            *ALIASES["asr"],
            *ALIASES["tts"],
        ]
        for model_id in (translate_models[0], tts_models[-1], "tts-1"):
            one = await stub(channel).GetOpenAiModel(
                asr_pb2.GetOpenAiModelRequest(model=model_id), timeout=10
            )
            assert json.loads(one.data)["id"] == model_id

    async with running_asr(
        tiny_whisper, engine="transformers", peers=f"translate={dead_address()},{tts_peer}"
    ) as (_, channel):
        with capture_logs() as logs:
            ids = await listed(channel)
        assert ids == [tiny_whisper.name, *tts_models, *ALIASES["asr"], *ALIASES["tts"]]
        (down,) = [entry for entry in logs if entry["event"] == "peer.unavailable"]
        assert (down["peer"], down["code"]) == ("translate", "UNAVAILABLE")
        code, _ = await bad_request(
            stub(channel).GetOpenAiModel(
                asr_pb2.GetOpenAiModelRequest(model=translate_models[0]), timeout=10
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        (httpbody_pb2.HttpBody(content_type="audio/wav", data=b"RIFF"), "content_type"),
        (upload(b"not audio at all"), "file"),
        (upload(tone_wav(), ("language", "xx")), "language"),
        (upload(tone_wav(), ("response_format", "diarized_json")), "response_format"),
        (upload(tone_wav(), ("temperature", "2")), "temperature"),
        (upload(tone_wav(), ("prompt", "p" * 900)), "prompt"),
    ],
)
async def test_mistakes_are_invalid_argument_naming_the_form_field(tiny_asr, request_body, field):
    _, channel = tiny_asr
    code, named = await bad_request(stub(channel).CreateTranscription(request_body, timeout=30))
    assert (code, named) == (grpc.StatusCode.INVALID_ARGUMENT, field)


# -- real whisper-tiny.en weights: words ------------------------------------------------------


@requires_shared
async def test_real_speech_in_every_format(real_asr):
    _, channel = real_asr
    speech = GOFORWARD.read_bytes()
    text = json.loads((await transcribe(channel, speech, ("model", "whisper-1"))).data)["text"]
    assert "go forward" in text.lower()
    verbose = json.loads(
        (
            await transcribe(
                channel,
                speech,
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "word"),
                ("timestamp_granularities[]", "segment"),
            )
        ).data
    )
    assert verbose["language"] == "english"
    assert abs(verbose["duration"] - 2.786) < 0.01
    words = [w["word"].strip(".,").lower() for w in verbose["words"]]
    assert words[:2] == ["go", "forward"]
    # Speech starts at 0.51 s; the first word begins near it and the words are in order.
    assert 0.3 < verbose["words"][0]["start"] < 1.2
    starts = [w["start"] for w in verbose["words"]]
    assert starts == sorted(starts)
    srt = (await transcribe(channel, speech, ("response_format", "srt"))).data.decode()
    assert srt.startswith("1\n00:00:0") and "go forward" in srt.lower()
    vtt = (await transcribe(channel, speech, ("response_format", "vtt"))).data.decode()
    assert vtt.startswith("WEBVTT\n\n00:00:0") and "go forward" in vtt.lower()
    plain = (await transcribe(channel, speech, ("response_format", "text"))).data.decode()
    assert plain.strip() == text


@requires_shared
async def test_english_only_model_cannot_translate(real_asr):
    _, channel = real_asr
    code, field = await bad_request(transcribe(channel, GOFORWARD.read_bytes(), translate=True))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "model")
