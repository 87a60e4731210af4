"""The official `openai` Python package pointed at the gateway: transcriptions in every response
format, translations, the model list, errors as the SDK's exceptions, and API keys sent the way
the SDK sends them (`Authorization: Bearer KEY`).

`speechmesh up`'s ASR serves a tiny random checkpoint (shapes only); one more ASR process on the
real whisper-tiny.en weights, behind its own Envoy, checks the words (skipped without ../shared).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import soundfile as sf
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import AUDIO, TINY_EN
from tests.gateway.conftest import run_envoy, run_keyed_envoy, stop
from tests.servers import ASR_SERVICE, free_port

openai = pytest.importorskip("openai")

GOFORWARD = AUDIO / "goforward.wav"  # "go forward ten meters"
RATE = 16000


def client(port: int, api_key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=api_key, max_retries=0, timeout=120
    )


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    """Real speech when ../shared is there, else a tone (the tiny model's text is noise)."""
    if GOFORWARD.is_file():
        return GOFORWARD
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    t = np.arange(int(RATE * 1.5)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    return path


@pytest.fixture(scope="module")
def sdk(up):
    with client(up.gateway.port) as sdk:
        yield sdk


# -- through `speechmesh up` (tiny random weights): shapes -----------------------------------


def test_transcription_json(sdk, speech_file):
    with speech_file.open("rb") as audio:
        result = sdk.audio.transcriptions.create(model="whisper-1", file=audio)
    assert isinstance(result, openai.types.audio.Transcription)
    assert isinstance(result.text, str)
    assert result.usage is not None and result.usage.type == "duration"


def test_transcription_verbose_json_with_word_timestamps(sdk, speech_file):
    with speech_file.open("rb") as audio:
        result = sdk.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            language="en",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.language == "english"
    assert result.duration == pytest.approx(sf.info(speech_file).duration, abs=0.01)
    assert result.segments is not None and result.words is not None
    for word in result.words:
        assert 0 <= word.start <= word.end <= result.duration + 0.01


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_transcription_text_formats(sdk, speech_file, response_format):
    with speech_file.open("rb") as audio:
        result = sdk.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format=response_format
        )
    assert isinstance(result, str)
    if response_format == "vtt":
        assert result.startswith("WEBVTT")
    if response_format == "srt" and result:
        assert re.match(r"1\n\d\d:\d\d:\d\d,\d\d\d --> ", result)


def test_translation(sdk, speech_file):
    with speech_file.open("rb") as audio:
        result = sdk.audio.translations.create(
            model="whisper-1", file=audio, response_format="verbose_json"
        )
    assert isinstance(result, openai.types.audio.TranslationVerbose)
    assert result.language == "english"


def test_models(sdk, up):
    """Every model the suite serves (ASR answers and asks its peers, which `speechmesh up`
    names), then the OpenAI aliases of ASR and TTS."""
    served = {
        area: [model["name"] for model in up.gateway.get(f"/v1/{area}/models").json()["models"]]
        for area in ("asr", "translate", "tts")
    }
    ids = [model.id for model in sdk.models.list()]
    assert ids[0].endswith("tiny-whisper")  # the served models first, then the aliases
    assert ids == [
        *served["asr"],
        *served["translate"],
        *served["tts"],
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "tts-1",
        "tts-1-hd",
        "gpt-4o-mini-tts",
    ]
    assert all(served.values())
    model = sdk.models.retrieve("whisper-1")
    assert (model.id, model.object, model.owned_by) == ("whisper-1", "model", "speechmesh")
    assert sdk.models.retrieve(served["tts"][0]).id == served["tts"][0]
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-5")


def test_errors_are_the_sdk_exceptions(sdk, speech_file):
    with speech_file.open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        sdk.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="diarized_json"
        )
    error = caught.value
    assert error.status_code == 400
    # The gateway's google.rpc.Status: its message is the exception's text, its BadRequest
    # violation names the form field.
    assert "response_format" in str(error)
    assert error.body["code"] == 3
    assert error.body["details"][0]["field_violations"][0]["field"] == "response_format"
    with speech_file.open("rb") as audio, pytest.raises(openai.NotFoundError):
        sdk.audio.transcriptions.create(model="no-such-model", file=audio)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"not audio"))
    assert caught.value.body["details"][0]["field_violations"][0]["field"] == "file"


def test_api_key_as_the_sdk_sends_it(up, credentials, tmp_path, speech_file):
    with run_keyed_envoy(tmp_path, up, credentials["api_keys"], ["asr"], ["asr", "translate"]) as (
        gateway,
        _,
    ):
        with (
            client(gateway.port, "not-a-key") as stranger,
            pytest.raises(openai.AuthenticationError),
        ):
            stranger.models.list()
        with client(gateway.port, "alice-key-0001") as alice, speech_file.open("rb") as audio:
            assert isinstance(
                alice.audio.transcriptions.create(model="whisper-1", file=audio).text, str
            )


def test_curl_multipart_upload(up, speech_file):
    """`curl -F` sends the same form as the SDKs (the README's example)."""
    reply = subprocess.run(
        [
            "curl",
            "-sS",
            "-F",
            f"file=@{speech_file}",
            "-F",
            "model=whisper-1",
            "-F",
            "response_format=text",
            f"http://127.0.0.1:{up.gateway.port}/v1/audio/transcriptions",
            "-w",
            "\n%{http_code} %{content_type}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.endswith("\n200 text/plain; charset=utf-8")


# -- real whisper-tiny.en weights: words ------------------------------------------------------


@pytest.fixture(scope="module")
def real_gateway(tmp_path_factory):
    """An ASR process on whisper-tiny.en and an Envoy in front of it: the gateway's port."""
    if not TINY_EN.is_dir() or not GOFORWARD.is_file():
        pytest.skip(f"real weights and speech not found at {TINY_EN.parent.parent}")
    folder = tmp_path_factory.mktemp("real-asr")
    port = free_port()
    env = dict(os.environ)
    env.update(
        SPEECHMESH_ASR_MODEL=str(TINY_EN),
        SPEECHMESH_ASR_HOST="127.0.0.1",
        SPEECHMESH_ASR_PORT=str(port),
        SPEECHMESH_ASR_METRICS_PORT="0",
        SPEECHMESH_ASR_WEBSOCKET_PORT="0",
        SPEECHMESH_ASR_GRACE_PERIOD_S="2",
        SPEECHMESH_ASR_LOG_FORMAT="json",
    )
    with (folder / "asr.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "speechmesh.cli", "serve", "asr"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_serving(port, process, folder / "asr.log")
        with run_envoy(
            folder, ["asr"], asr_upstream=f"127.0.0.1:{port}", translate_upstream="127.0.0.1:1"
        ) as (gateway, _):
            yield gateway.port
    finally:
        stop(process, timeout_s=30)


def _wait_serving(port: int, process: subprocess.Popen, log, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(grpc.RpcError):
                reply = health.Check(health_pb2.HealthCheckRequest(service=ASR_SERVICE), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.3)
    raise TimeoutError(f"ASR not SERVING after {timeout_s} s:\n{log.read_text()[-3000:]}")


def test_real_speech_through_the_sdk(real_gateway):
    with client(real_gateway) as sdk:
        with GOFORWARD.open("rb") as audio:
            text = sdk.audio.transcriptions.create(model="whisper-1", file=audio).text
        assert "go forward" in text.lower()
        with GOFORWARD.open("rb") as audio:
            verbose = sdk.audio.transcriptions.create(
                model="whisper-1",
                file=audio,
                response_format="verbose_json",
                timestamp_granularities=["word"],
            )
        assert [w.word.lower() for w in verbose.words[:2]] == ["go", "forward"]
        assert 0.3 < verbose.words[0].start < 1.2  # speech starts at 0.51 s
        with GOFORWARD.open("rb") as audio:
            subtitles = sdk.audio.transcriptions.create(
                model="whisper-1", file=io.BytesIO(audio.read()), response_format="srt"
            )
        assert subtitles.startswith("1\n00:00:00,") and "go forward" in subtitles.lower()
        # An English-only model cannot translate: 400 naming `model`.
        with GOFORWARD.open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
            sdk.audio.translations.create(model="whisper-1", file=audio)
        assert caught.value.body["details"][0]["field_violations"][0]["field"] == "model"
