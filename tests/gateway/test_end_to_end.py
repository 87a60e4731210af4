"""End to end through the real Envoy in front of `speechmesh up`'s ASR and translate processes
(tiny random checkpoints): gRPC unary and bidirectional streaming, REST JSON, raw audio up and
down, server-sent events, chunked client streaming, and error mapping.

The tiny models' text is noise, so these tests assert codes, shapes and protocol, not words.
Streams whose results need speech the VAD detects use ../shared/audio when it is there.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import socket
import time
import urllib.parse

import grpc
import numpy as np
import pytest
import soundfile as sf
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
from tests.conftest import AUDIO
from tests.gateway.conftest import run_envoy

GOFORWARD = AUDIO / "goforward.wav"  # "go forward ten meters", speech from 0.51 s to 2.27 s
RATE = 16000


def tone_wav(seconds: float = 1.5) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, samples, RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


def speech_pcm() -> tuple[bytes, bool]:
    """16 kHz LINEAR16 audio, and whether it is real speech (else a tone: no VAD events)."""
    if GOFORWARD.is_file():
        samples, rate = sf.read(GOFORWARD, dtype="int16")
        assert rate == RATE
        return samples.tobytes(), True
    samples, _ = sf.read(io.BytesIO(tone_wav(2.5)), dtype="int16")
    return samples.tobytes(), False


def streaming_config() -> dict:
    return {
        "streaming_config": {
            "config": {
                "audio_format": {
                    "encoding": "AUDIO_ENCODING_LINEAR16",
                    "sample_rate_hertz": RATE,
                }
            },
            "enable_voice_activity_events": True,
        }
    }


@pytest.fixture(scope="module")
def channel(up):
    with grpc.insecure_channel(up.gateway.target) as channel:
        yield channel


# -- gRPC through the gateway ----------------------------------------------------------------


def test_grpc_unary_calls_reach_each_service(channel):
    asr = asr_pb2_grpc.AsrServiceStub(channel)
    models = asr.ListModels(asr_pb2.ListModelsRequest(request_id="r-1"), timeout=30)
    assert models.request_id == "r-1"
    assert models.models[0].random_weights
    reply = asr.Recognize(
        asr_pb2.RecognizeRequest(audio=tone_wav(), config=asr_pb2.RecognitionConfig()), timeout=60
    )
    assert reply.audio_duration.ToMilliseconds() == 1500
    translate = translate_pb2_grpc.TranslateServiceStub(channel)
    text = translate.TranslateText(
        translate_pb2.TranslateTextRequest(
            texts=["Hello.", "Goodbye."], source_language_code="en", target_language_code="fr"
        ),
        timeout=60,
    )
    assert len(text.translations) == 2


def test_grpc_error_details_pass_through(channel):
    asr = asr_pb2_grpc.AsrServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        asr.Recognize(
            asr_pb2.RecognizeRequest(
                audio=tone_wav(), config=asr_pb2.RecognitionConfig(language_code="xx")
            ),
            timeout=30,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "config.language_code"


def test_grpc_bidi_streaming_through_the_gateway(channel):
    pcm, is_speech = speech_pcm()
    step = RATE // 10 * 2  # 100 ms

    def requests():
        config = asr_pb2.StreamingRecognizeRequest()
        config.streaming_config.config.audio_format.encoding = 1  # LINEAR16
        config.streaming_config.config.audio_format.sample_rate_hertz = RATE
        config.streaming_config.enable_voice_activity_events = True
        yield config
        for offset in range(0, len(pcm), step):
            yield asr_pb2.StreamingRecognizeRequest(audio=pcm[offset : offset + step])
        yield asr_pb2.StreamingRecognizeRequest(audio=bytes(RATE))  # 0.5 s of silence

    asr = asr_pb2_grpc.AsrServiceStub(channel)
    responses = list(asr.StreamingRecognize(requests(), timeout=120))
    if is_speech:
        events = [r.speech_event.type for r in responses if r.HasField("speech_event")]
        assert asr_pb2.SpeechActivityEvent.TYPE_SPEECH_BEGIN in events
        finals = [r.result for r in responses if r.HasField("result") and r.result.is_final]
        assert finals and finals[0].end_offset.ToMilliseconds() > 0


def test_health_and_reflection_pick_the_service_by_header(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for area, service in (
        ("asr", "speechmesh.asr.v1.AsrService"),
        ("translate", "speechmesh.translate.v1.TranslateService"),
    ):
        reply = health.Check(
            health_pb2.HealthCheckRequest(service=service),
            metadata=[("x-speechmesh-service", area)],
            timeout=10,
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=[("x-speechmesh-service", area)],
            timeout=10,
        )
        names = [s.name for answer in answers for s in answer.list_services_response.service]
        assert service in names


def test_unknown_grpc_service_is_unimplemented(channel):
    call = channel.unary_unary("/speechmesh.nothing.v1.Nothing/Call")
    with pytest.raises(grpc.RpcError) as caught:
        call(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- REST ----------------------------------------------------------------------------------


def test_rest_get_prints_proto_names_and_every_field(up):
    reply = up.gateway.get("/v1/asr/models")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    model = reply.json()["models"][0]
    # Proto field names, and fields at their default values are printed too.
    assert model["random_weights"] is True
    assert model["error"] == ""
    assert model["state"] == "MODEL_STATE_READY"
    languages = up.gateway.get("/v1/translate/languages")
    assert languages.status == 200
    assert up.gateway.get("/v1/translate/models").json()["models"]


def test_rest_post_json(up):
    reply = up.gateway.post_json(
        "/v1/translate:translateText",
        {"texts": ["Hello."], "source_language_code": "en", "target_language_code": "fr"},
    )
    assert reply.status == 200, reply.body
    translation = reply.json()["translations"][0]
    assert translation["source_language_code"] == "en"
    assert isinstance(translation["translated_text"], str)


def test_rest_raw_audio_upload(up):
    query = urllib.parse.urlencode(
        {
            "config.language_code": "en",
            "config.enable_word_time_offsets": "true",
            "request_id": "u1",
        }
    )
    reply = up.gateway.request(
        "POST",
        f"/v1/asr:recognizeFile?{query}",
        tone_wav(),
        {"Content-Type": "audio/wav"},
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["request_id"] == "u1"
    assert body["audio_duration"] == "1.500s"
    assert body["language_code"] == "en"


def test_rest_raw_audio_download(up):
    reply = up.gateway.post_json(
        "/v1/translate:translateTextToSpeechAudio",
        {"text": "Hello.", "config": {"source_language_code": "en", "target_language_code": "fr"}},
    )
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(reply.body))
    assert rate > 0 and len(samples) > 0


def test_rest_speech_to_speech_upload_and_download(up):
    reply = up.gateway.request(
        "POST",
        "/v1/translate:translateSpeechAudio?config.target_language_code=fr",
        tone_wav(),
        {"Content-Type": "audio/wav"},
    )
    # A tone holds no speech: the service may say so; either way the audio path round-trips.
    assert reply.status in (200, 400), reply.body
    if reply.status == 200:
        assert reply.headers["content-type"].startswith("audio/")


def _sse_events(body: bytes) -> list[dict]:
    events = []
    for block in body.decode().split("\n\n"):
        block = block.strip()
        if block:
            assert block.startswith("data: "), block
            events.append(json.loads(block[len("data: ") :]))
    return events


def test_rest_streaming_with_chunked_body_answers_server_sent_events(up):
    pcm, is_speech = speech_pcm()
    pieces = [streaming_config()]
    step = RATE // 5 * 2
    pcm += bytes(RATE)  # 0.5 s of silence ends the utterance
    pieces += [
        {"audio": base64.b64encode(pcm[i : i + step]).decode()} for i in range(0, len(pcm), step)
    ]

    def body():
        yield b"["
        for index, piece in enumerate(pieces):
            yield (b"," if index else b"") + json.dumps(piece).encode()
        yield b"]"

    connection = http.client.HTTPConnection("127.0.0.1", up.gateway.port, timeout=120)
    connection.request(
        "POST",
        "/v1/asr:streamingRecognize",
        body=body(),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    reply = connection.getresponse()
    data = reply.read()
    connection.close()
    assert reply.status == 200, data
    assert reply.getheader("content-type") == "text/event-stream"
    events = _sse_events(data)
    if is_speech:
        kinds = [e["speech_event"]["type"] for e in events if "speech_event" in e]
        assert kinds[:2] == ["TYPE_SPEECH_BEGIN", "TYPE_SPEECH_END"]
        finals = [e["result"] for e in events if "result" in e and e["result"]["is_final"]]
        assert finals and finals[0]["start_offset"] == "0.512s"


@pytest.mark.skipif(not GOFORWARD.is_file(), reason=f"needs speech from {GOFORWARD}")
def test_rest_stream_answers_while_the_request_is_still_open(up):
    """Events arrive while the client is still sending: real streaming over HTTP/1.1."""
    pcm, _ = speech_pcm()
    sock = socket.create_connection(("127.0.0.1", up.gateway.port), timeout=30)
    sock.sendall(
        b"POST /v1/asr:streamingRecognize HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )

    def send(data: bytes) -> None:
        sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    send(b"[" + json.dumps(streaming_config()).encode())
    step = RATE // 10 * 2
    received = b""
    sock.settimeout(0.02)
    for offset in range(0, len(pcm), step):
        send(
            b","
            + json.dumps({"audio": base64.b64encode(pcm[offset : offset + step]).decode()}).encode()
        )
        time.sleep(0.02)
        with contextlib.suppress(TimeoutError):
            received += sock.recv(65536)
    deadline = time.monotonic() + 30
    while b"TYPE_SPEECH_BEGIN" not in received and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            received += sock.recv(65536)
    # The request is still open (no closing bracket, no last chunk) and the event is here.
    assert b"200 OK" in received and b"text/event-stream" in received
    assert b"TYPE_SPEECH_BEGIN" in received
    send(b"]")
    sock.sendall(b"0\r\n\r\n")
    sock.settimeout(30)
    while not received.endswith(b"0\r\n\r\n"):
        data = sock.recv(65536)
        if not data:
            break
        received += data
    sock.close()
    assert b'"is_final":true' in received


# -- errors as REST callers see them ------------------------------------------------------------


def test_invalid_argument_is_400_with_the_field_violation(up):
    reply = up.gateway.post_json(
        "/v1/translate:translateText",
        {"texts": ["Hello."], "source_language_code": "en", "target_language_code": "xx"},
    )
    assert reply.status == 400
    status = reply.json()
    assert status["code"] == 3
    (detail,) = status["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["field_violations"][0]["field"] == "target_language_code"


def test_unknown_query_parameter_is_400(up):
    reply = up.gateway.request(
        "POST", "/v1/asr:recognizeFile?config.languag_code=en", tone_wav(), {}
    )
    assert reply.status == 400
    assert "languag_code" in reply.json()["message"]


def test_unknown_paths_are_404_json(up):
    for method, path in (("GET", "/v1/nothing"), ("GET", "/"), ("POST", "/v2/asr:recognize")):
        reply = up.gateway.request(method, path)
        assert reply.status == 404, (path, reply.body)
        assert reply.json()["code"] == 5


def test_body_over_the_limit_is_413(up, tmp_path):
    limit = 256 * 1024
    with run_envoy(
        tmp_path,
        ["asr"],
        max_request_bytes=limit,
        asr_upstream=f"127.0.0.1:{up.ports['asr']}",
        translate_upstream=f"127.0.0.1:{up.ports['translate']}",
    ) as (gateway, _):
        small = gateway.request(
            "POST", "/v1/asr:recognizeFile", tone_wav(1.0), {"Content-Type": "audio/wav"}
        )
        assert small.status == 200, small.body
        big = gateway.request(
            "POST", "/v1/asr:recognizeFile", tone_wav(10.0), {"Content-Type": "audio/wav"}
        )
        assert big.status == 413
        assert str(limit) in big.json()["message"]


def test_rate_limit_answers_429_per_client(up, tmp_path):
    with run_envoy(
        tmp_path,
        ["asr"],
        rate_limit_requests=2,
        rate_limit_interval_s=60,
        asr_upstream=f"127.0.0.1:{up.ports['asr']}",
        translate_upstream=f"127.0.0.1:{up.ports['translate']}",
    ) as (gateway, _):
        codes = [gateway.get("/v1/asr/models").status for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = gateway.get("/v1/asr/models")
        assert limited.json()["code"] == 8
        assert limited.headers["retry-after"] == "60"
        with grpc.insecure_channel(gateway.target) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                asr_pb2_grpc.AsrServiceStub(channel).ListModels(
                    asr_pb2.ListModelsRequest(), timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Health checks are not rate limited.
        with grpc.insecure_channel(gateway.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="speechmesh.asr.v1.AsrService"), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _speech_wav() -> bytes:
    return GOFORWARD.read_bytes() if GOFORWARD.is_file() else tone_wav(2.0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


#: Every annotated ASR and translate RPC not covered above: (path, JSON body or raw audio,
#: response content type).
REST_ROUTES = [
    ("/v1/asr:recognize", lambda: {"audio": _b64(_speech_wav())}, "application/json"),
    (
        "/v1/translate:translateSpeech",
        lambda: {"audio": _b64(_speech_wav()), "config": {"target_language_code": "fr"}},
        "application/json",
    ),
    (
        "/v1/translate:translateSpeechFile?config.target_language_code=fr",
        _speech_wav,
        "application/json",
    ),
    (
        "/v1/translate:translateTextToSpeech",
        lambda: {
            "text": "Hello.",
            "config": {"source_language_code": "en", "target_language_code": "fr"},
        },
        "application/json",
    ),
    (
        "/v1/translate:streamingTranslateSpeech",
        lambda: [
            {"streaming_config": {"config": {"target_language_code": "fr"}}},
            {"audio": _b64(_speech_wav())},
        ],
        "text/event-stream",
    ),
]


@pytest.mark.parametrize(("path", "body", "content_type"), REST_ROUTES)
def test_every_annotated_rpc_answers_over_rest(up, path, body, content_type):
    payload = body()
    if isinstance(payload, bytes):
        reply = up.gateway.request("POST", path, payload, {"Content-Type": "audio/wav"})
    else:
        reply = up.gateway.post_json(path, payload)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == content_type
    if content_type == "text/event-stream":
        assert all("request_id" in event for event in _sse_events(reply.body))
    else:
        assert "request_id" in reply.json()
