"""TTS through the real Envoy: gRPC unary and bidi streaming, REST JSON, raw audio out, voices
uploaded as raw audio, and OpenAI's `audio.speech.create` (voices kept apart per identity:
test_identity.py). The TTS service runs a tiny random CSM (noise, real API)."""

from __future__ import annotations

import io

import grpc
import pytest
import soundfile as sf

from speechmesh.dsp.audio import decode_audio
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.sounds import REFERENCE

openai = pytest.importorskip("openai")

TTS = "speechmesh.tts.v1.TtsService"


@pytest.fixture(scope="module")
def tts(up):
    with grpc.insecure_channel(up.gateway.target) as channel:
        yield tts_pb2_grpc.TtsServiceStub(channel)


def test_grpc_synthesize_and_stream_through_the_gateway(tts):
    reply = tts.Synthesize(
        tts_pb2.SynthesizeRequest(text="Through Envoy.", config=tts_pb2.SynthesisConfig(seed=3)),
        timeout=60,
    )
    assert reply.sample_rate_hertz == 24000 and reply.seed == 3
    assert decode_audio(reply.audio, None, None).duration > 0.1

    def requests():
        yield tts_pb2.StreamingSynthesizeRequest(
            streaming_config=tts_pb2.StreamingSynthesisConfig(request_id="g1")
        )
        yield tts_pb2.StreamingSynthesizeRequest(text="One. Two")
        yield tts_pb2.StreamingSynthesizeRequest(text=" three.")

    responses = list(tts.StreamingSynthesize(requests(), timeout=60))
    assert responses[-1].summary.sentence_count == 2
    assert {r.request_id for r in responses} == {"g1"}


def test_rest_json_and_raw_audio(up):
    reply = up.gateway.post_json(
        "/v1/tts:synthesize", {"text": "Hello over REST.", "config": {"seed": "5"}}
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["seed"] == "5" and body["sentences"][0]["text"] == "Hello over REST."
    raw = up.gateway.post_json(
        "/v1/tts:synthesizeAudio",
        {
            "text": "Raw audio.",
            "config": {"output_audio_config": {"encoding": "OUTPUT_ENCODING_FLAC"}},
        },
    )
    assert raw.status == 200 and raw.headers["content-type"] == "audio/flac"
    assert sf.info(io.BytesIO(raw.body)).format == "FLAC"
    models = up.gateway.get("/v1/tts/models")
    assert models.json()["models"][0]["engine"] == "csm"


def test_voice_upload_as_raw_body_then_use_and_delete(up):
    reply = up.gateway.request(
        "POST",
        "/v1/voices:upload?voice_id=rest-voice&voice.transcript=Hello%20there.",
        body=REFERENCE,
        headers={"Content-Type": "audio/wav"},
    )
    assert reply.status == 200, reply.body
    assert reply.json()["name"] == "voices/rest-voice"
    assert up.gateway.get("/v1/voices/rest-voice").json()["transcript"] == "Hello there."
    spoken = up.gateway.post_json(
        "/v1/tts:synthesizeAudio",
        {"text": "In my voice.", "config": {"voice": "voices/rest-voice"}},
    )
    assert spoken.status == 200 and spoken.headers["content-type"] == "audio/wav"
    assert up.gateway.request("DELETE", "/v1/voices/rest-voice").status == 200
    missing = up.gateway.get("/v1/voices/rest-voice")
    assert missing.status == 404 and missing.json()["code"] == 5


def test_openai_speech(up):
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{up.gateway.port}/v1", api_key="x", max_retries=0
    ) as sdk:
        mp3 = sdk.audio.speech.create(model="tts-1", voice="alloy", input="Hello from OpenAI.")
        audio = decode_audio(mp3.content, None, None)
        assert audio.sample_rate == 24000 and audio.duration > 0.1
        wav = sdk.audio.speech.create(
            model="tts-1", voice="alloy", input="Faster.", response_format="wav", speed=2.0
        )
        assert sf.info(io.BytesIO(wav.content)).format == "WAV"
        pcm = sdk.audio.speech.create(
            model="tts-1", voice="alloy", input="Raw.", response_format="pcm"
        )
        assert len(pcm.content) % 2 == 0 and len(pcm.content) > 0
        with pytest.raises(openai.BadRequestError):
            sdk.audio.speech.create(model="tts-1", voice="alloy", input="x", speed=9)
        with pytest.raises(openai.NotFoundError):
            sdk.audio.speech.create(model="tts-1", voice="nobody-here", input="Hi.")
        with pytest.raises(openai.BadRequestError):
            sdk.audio.speech.create(
                model="tts-1", voice="alloy", input="Hi.", response_format="aac"
            )
