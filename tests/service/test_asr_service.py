"""The ASR service end to end on the tiny random checkpoint: shapes, codes, streams, metrics.

The tiny model's text is noise, so these tests assert what the service does
around it: request ids, times, languages, events, batching, cancellation.
Streaming tests that need speech the VAD detects use ../shared/audio.
"""

from __future__ import annotations

import asyncio
import io
import pathlib
import re
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest
import soundfile as sf
import torch
from google.api import httpbody_pb2
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from speechmesh.asr.v1 import asr_pb2
from speechmesh.audio.v1 import audio_pb2
from speechmesh.common.v1 import common_pb2
from tests.asr_client import stream_config, stub
from tests.conftest import ASR_ENGINES, AUDIO, TINY_EN, requires_shared, running_asr

RATE = 16000
GOFORWARD = AUDIO / "goforward.wav"  # "go forward ten meters": speech from 0.51 s to 2.27 s


def needs_speech(test):
    """Real speech (the VAD ignores tones and noise) from ../shared/audio."""
    missing = pytest.mark.skipif(not GOFORWARD.is_file(), reason=f"{GOFORWARD} not found")
    return requires_shared(missing(test))


Event = asr_pb2.SpeechActivityEvent
BEGIN, END, EOSU = (
    Event.TYPE_SPEECH_BEGIN,
    Event.TYPE_SPEECH_END,
    Event.TYPE_END_OF_SINGLE_UTTERANCE,
)


# -- audio -------------------------------------------------------------------


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    """A 440 Hz sine with a little noise, float32: sound the VAD does not call speech."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(7).normal(0, 0.01, len(t))
    return (0.3 * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)


def wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def int16(samples: np.ndarray) -> bytes:
    return np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def speech() -> np.ndarray:
    """goforward.wav as float32 at 16 kHz."""
    samples, rate = sf.read(GOFORWARD, dtype="float32")
    assert rate == RATE
    return samples


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


# -- helpers -----------------------------------------------------------------


def seconds_pb(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(value * 1e9))
    return out


def ns(duration) -> int:
    return duration.ToNanoseconds()


def sec(duration) -> float:
    return duration.ToNanoseconds() / 1e9


def audio_request(data: bytes) -> asr_pb2.StreamingRecognizeRequest:
    return asr_pb2.StreamingRecognizeRequest(audio=data)


async def requests(first, pcm: bytes, chunk_s: float = 0.1, pace_s: float = 0.0):
    """The config, then LINEAR16 bytes in chunks (pace_s between them), then half-close."""
    yield first
    step = int(RATE * chunk_s) * 2
    for offset in range(0, len(pcm), step):
        yield audio_request(pcm[offset : offset + step])
        await asyncio.sleep(pace_s)


def events(responses) -> list[tuple[int, float]]:
    return [
        (r.speech_event.type, sec(r.speech_event.offset))
        for r in responses
        if r.HasField("speech_event")
    ]


def finals(responses) -> list[asr_pb2.StreamingRecognitionResult]:
    return [r.result for r in responses if r.HasField("result") and r.result.is_final]


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def active_streams() -> float:
    return metric("speechmesh_active_streams", service="asr", method="StreamingRecognize")


async def wait_for(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def still_serves(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    request = asr_pb2.RecognizeRequest(request_id="still", audio=wav(tone(0.5)))
    response = await stub(channel).Recognize(request, timeout=60)
    assert response.request_id == "still"


async def list_models(channel) -> asr_pb2.ListModelsResponse:
    return await stub(channel).ListModels(asr_pb2.ListModelsRequest(request_id="lm"), timeout=10)


# -- unary ---------------------------------------------------------------------


def check_recognize_response(response, request_id, duration_s, languages, words=True):
    assert response.request_id == request_id
    assert abs(sec(response.audio_duration) - duration_s) <= 0.001
    total = ns(response.audio_duration)
    assert response.segments, "the tiny model always says something"
    for segment in response.segments:
        assert 0 <= ns(segment.start_offset) <= ns(segment.end_offset) <= total, segment
        assert segment.text == segment.text.strip()
        assert 0.0 <= segment.confidence <= 1.0
        for word in segment.words:
            assert 0 <= ns(word.start_offset) <= ns(word.end_offset) <= total, word
            assert 0.0 <= word.confidence <= 1.0
    starts = [ns(s.start_offset) for s in response.segments]
    assert starts == sorted(starts)
    assert response.transcript == " ".join(s.text for s in response.segments if s.text)
    assert response.language_code in languages
    assert 0.0 < response.language_probability <= 1.0
    if words:
        assert sum(len(s.words) for s in response.segments) > 0, "word times were asked for"
    else:
        assert all(not s.words for s in response.segments)


async def test_recognize_response(tiny_asr):
    _, channel = tiny_asr
    languages = set((await list_models(channel)).models[0].language_codes)
    audio = wav(tone(2.0))
    config = asr_pb2.RecognitionConfig(enable_word_time_offsets=True)
    request = asr_pb2.RecognizeRequest(request_id="req-1", audio=audio, config=config)
    response = await stub(channel).Recognize(request, timeout=60)
    check_recognize_response(response, "req-1", 2.0, languages)
    assert response.model == (await list_models(channel)).models[0].name

    plain = asr_pb2.RecognizeRequest(request_id="req-2", audio=audio)
    response = await stub(channel).Recognize(plain, timeout=60)
    check_recognize_response(response, "req-2", 2.0, languages, words=False)


async def test_given_language_is_echoed_with_probability_one(tiny_asr):
    _, channel = tiny_asr
    config = asr_pb2.RecognitionConfig(language_code="pt-BR")
    request = asr_pb2.RecognizeRequest(audio=wav(tone(1.0)), config=config)
    response = await stub(channel).Recognize(request, timeout=60)
    assert response.language_code == "pt"
    assert response.language_probability == 1.0


async def test_recognize_file_matches_recognize(tiny_asr):
    _, channel = tiny_asr
    languages = set((await list_models(channel)).models[0].language_codes)
    audio = wav(tone(1.5))
    config = asr_pb2.RecognitionConfig(enable_word_time_offsets=True)
    file_request = asr_pb2.RecognizeFileRequest(
        request_id="file-1",
        config=config,
        audio=httpbody_pb2.HttpBody(content_type="audio/wav", data=audio),
    )
    by_file = await stub(channel).RecognizeFile(file_request, timeout=60)
    check_recognize_response(by_file, "file-1", 1.5, languages)
    unary = await stub(channel).Recognize(
        asr_pb2.RecognizeRequest(request_id="file-1", audio=audio, config=config), timeout=60
    )
    assert by_file.language_code == unary.language_code
    assert by_file.transcript == unary.transcript
    assert by_file.audio_duration == unary.audio_duration


@needs_speech
async def test_long_recording_is_split_into_windows(tiny_asr):
    _, channel = tiny_asr
    clip = speech()
    recording = np.concatenate([np.concatenate([clip, silence(1.0)]) for _ in range(14)])
    duration = len(recording) / RATE
    assert duration > 50  # two 30 s windows at least
    config = asr_pb2.RecognitionConfig(enable_word_time_offsets=True)
    request = asr_pb2.RecognizeRequest(request_id="long", audio=wav(recording), config=config)
    response = await stub(channel).Recognize(request, timeout=120)
    languages = set((await list_models(channel)).models[0].language_codes)
    check_recognize_response(response, "long", duration, languages)
    assert max(sec(s.start_offset) for s in response.segments) > 30, "audio past the first window"


async def test_long_recording_without_speech(tiny_asr):
    _, channel = tiny_asr
    request = asr_pb2.RecognizeRequest(request_id="quiet", audio=wav(tone(40.0)))
    response = await stub(channel).Recognize(request, timeout=120)
    assert response.request_id == "quiet"
    assert ns(response.audio_duration) == 40_000_000_000
    assert list(response.segments) == [] and response.transcript == ""


def _raw_case(encoding: str, channels: int = 1) -> tuple[bytes, audio_pb2.AudioFormat]:
    rate = 8000
    mono = tone(1.0, rate)
    samples = np.stack([mono, -mono], axis=1) if channels == 2 else mono
    if encoding == "LINEAR16":
        data = int16(samples)
    elif encoding == "FLOAT32":
        data = samples.astype("<f4").tobytes()
    else:
        buf = io.BytesIO()
        subtype = {"MULAW": "ULAW", "ALAW": "ALAW"}[encoding]
        sf.write(buf, samples, rate, format="RAW", subtype=subtype)
        data = buf.getvalue()
    fmt = audio_pb2.AudioFormat(
        encoding=audio_pb2.AudioEncoding.Value(f"AUDIO_ENCODING_{encoding}"),
        sample_rate_hertz=rate,
        channel_count=channels,
    )
    return data, fmt


async def test_raw_encodings_at_8khz_and_stereo(tiny_asr):
    _, channel = tiny_asr
    cases = {
        "LINEAR16": _raw_case("LINEAR16"),
        "FLOAT32": _raw_case("FLOAT32"),
        "MULAW": _raw_case("MULAW"),
        "ALAW": _raw_case("ALAW"),
        "LINEAR16-stereo": _raw_case("LINEAR16", channels=2),
        "FLOAT32-stereo": _raw_case("FLOAT32", channels=2),
    }
    assert len(cases["MULAW"][0]) == 8000 and len(cases["LINEAR16-stereo"][0]) == 32000
    responses = await asyncio.gather(
        *(
            stub(channel).Recognize(
                asr_pb2.RecognizeRequest(
                    request_id=name, audio=data, config=asr_pb2.RecognitionConfig(audio_format=fmt)
                ),
                timeout=60,
            )
            for name, (data, fmt) in cases.items()
        )
    )
    for name, response in zip(cases, responses, strict=True):
        assert response.request_id == name
        # one second whatever the encoding and channel count
        assert ns(response.audio_duration) == 1_000_000_000, name


async def test_list_models(tiny_asr, tiny_whisper):
    _, channel = tiny_asr
    response = await list_models(channel)
    assert response.request_id == "lm"
    assert len(response.models) == 1
    model = response.models[0]
    # A stable id (the folder's name), with the path it was loaded from as a detail.
    assert (model.name, model.source) == (tiny_whisper.name, str(tiny_whisper))
    assert model.default
    assert model.state == common_pb2.MODEL_STATE_READY
    assert model.random_weights
    assert model.engine == "whisper"
    if torch.cuda.is_available():
        assert model.device.startswith("cuda")
    else:
        assert model.device == "cpu"
        # CTranslate2 reports its compute type: int8 weights, float32 activations on a CPU.
        assert (
            model.dtype == {"transformers": "float32", "ctranslate2": "int8_float32"}[model.runtime]
        )
    assert model.memory_bytes > 0
    assert 95 <= len(model.language_codes) <= 110
    assert {"en", "fr", "de", "zh", "pt"} <= set(model.language_codes)
    assert len(set(model.language_codes)) == len(model.language_codes)
    assert model.supports_translation
    assert model.supports_language_detection
    assert model.error == ""


async def test_reflection_lists_the_services(tiny_asr):
    _, channel = tiny_asr
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    services = {s.name async for r in call for s in r.list_services_response.service}
    assert {
        "speechmesh.asr.v1.AsrService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services


GRPCURL = pathlib.Path(sys.executable).parent / "grpcurl"


@pytest.mark.skipif(not GRPCURL.is_file(), reason=f"{GRPCURL} not installed (dev extra)")
async def test_grpcurl_lists_and_describes_through_reflection(tiny_asr):
    host, _ = tiny_asr

    async def grpcurl(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(GRPCURL),
            "-plaintext",
            f"127.0.0.1:{host.port}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        return out.decode()

    listed = (await grpcurl("list")).split()
    assert "speechmesh.asr.v1.AsrService" in listed
    assert "grpc.health.v1.Health" in listed
    described = await grpcurl("describe", "speechmesh.asr.v1.AsrService")
    for method in ("Recognize", "RecognizeFile", "StreamingRecognize", "ListModels"):
        assert f"rpc {method}" in described, described


async def test_metrics_endpoint(tiny_asr):
    host, channel = tiny_asr
    await stub(channel).Recognize(asr_pb2.RecognizeRequest(audio=wav(tone(0.5))), timeout=60)
    url = f"http://127.0.0.1:{host.metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
            return reply.read().decode()

    text = await asyncio.to_thread(scrape)
    requests_ok = [
        line
        for line in text.splitlines()
        if line.startswith("speechmesh_requests_total{")
        and 'method="Recognize"' in line
        and 'code="OK"' in line
        and 'service="asr"' in line
    ]
    assert requests_ok, "no speechmesh_requests_total for Recognize OK"
    assert float(requests_ok[0].rsplit(" ", 1)[1]) >= 1
    for name in (
        "speechmesh_batch_size_bucket",
        "speechmesh_batch_size_count",
        "speechmesh_queue_depth",
        "speechmesh_request_duration_seconds_bucket",
    ):
        assert re.search(rf"^{name}\{{", text, re.M), name


async def test_deadline_exceeded_leaves_the_server_serving(tiny_asr):
    _, channel = tiny_asr
    request = asr_pb2.RecognizeRequest(audio=wav(tone(25.0)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub(channel).Recognize(request, timeout=0.05)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await still_serves(channel)


# -- streaming -----------------------------------------------------------------


@pytest.mark.parametrize("chunk_s", [0.02, 0.25])
async def test_no_speech_no_results(tiny_asr, chunk_s):
    _, channel = tiny_asr
    first = stream_config(RATE, request_id="quiet", enable_voice_activity_events=True)
    responses = [
        r
        async for r in stub(channel).StreamingRecognize(
            requests(first, int16(tone(3.0)), chunk_s=chunk_s), timeout=60
        )
    ]
    assert responses == [], "a sine is not speech: no events, no results"


def check_final(result, utterance_index: int) -> None:
    assert result.is_final
    assert result.utterance_index == utterance_index
    assert result.stability == 1.0
    assert result.stable_transcript == result.transcript
    assert result.transcript, "empty finals are not sent"
    assert ns(result.start_offset) <= ns(result.end_offset)
    assert result.language_code
    assert 0.0 < result.language_probability <= 1.0


def kinds(responses) -> list:
    """The response stream as a list of event types and "final"/"interim"."""
    out = []
    for r in responses:
        if r.HasField("speech_event"):
            out.append(r.speech_event.type)
        else:
            out.append("final" if r.result.is_final else "interim")
    return out


@pytest.fixture(scope="module", params=ASR_ENGINES)
async def speaking_asr(request):
    """ASR on the real whisper-tiny.en, on each engine: for tests that need every utterance of
    speech to have words (random weights decode arbitrary timestamps, and a segment they place
    in the padding after the audio is rightly dropped). (host, channel)."""
    if not TINY_EN.is_dir():
        pytest.skip(f"real weights not found at {TINY_EN}")
    async with running_asr(TINY_EN, engine=request.param) as served:
        yield served


@needs_speech
async def test_voice_activity_events_and_finals(speaking_asr):
    _, channel = speaking_asr
    clip = speech()
    pcm = int16(np.concatenate([clip, silence(1.0), clip, silence(1.0)]))
    first = stream_config(RATE, request_id="vad", enable_voice_activity_events=True)
    responses = [
        r async for r in stub(channel).StreamingRecognize(requests(first, pcm), timeout=60)
    ]
    assert all(r.request_id == "vad" for r in responses)
    # a final waits for nothing queued after it, and nothing queued after it overtakes it
    assert kinds(responses) == [BEGIN, END, "final", BEGIN, END, "final"]
    offsets = [offset for _, offset in events(responses)]
    assert offsets == sorted(offsets) and len(set(offsets)) == 4
    assert 0.3 < offsets[0] < 0.8 and 2.0 < offsets[1] < 2.6, offsets
    shift = len(clip) / RATE + 1.0  # the second copy starts this much later
    assert abs(offsets[2] - offsets[0] - shift) < 0.1, offsets
    assert abs(offsets[3] - offsets[1] - shift) < 0.1, offsets
    results = finals(responses)
    for index, result in enumerate(results):
        check_final(result, index)
        assert sec(result.start_offset) == pytest.approx(offsets[2 * index], abs=0.001)
        assert sec(result.end_offset) == pytest.approx(offsets[2 * index + 1], abs=0.001)


@needs_speech
async def test_wav_stream_in_arbitrary_chunks_matches_raw(tiny_asr):
    _, channel = tiny_asr
    data = GOFORWARD.read_bytes()
    assert data[:4] == b"RIFF"
    sizes = [1, 1, 2, 1, 3, 5, 8, 13, 1, 21]  # the header, byte by byte at first
    rng = np.random.default_rng(3)
    while sum(sizes) < len(data):
        sizes.append(int(rng.integers(1, 4000)))
    chunks, offset = [], 0
    for size in sizes:
        chunks.append(data[offset : offset + size])
        offset += size
    assert b"".join(chunks) == data and any(len(c) % 2 for c in chunks[10:])

    async def wav_requests():
        yield asr_pb2.StreamingRecognizeRequest(
            streaming_config=asr_pb2.StreamingRecognitionConfig(
                request_id="wav", enable_voice_activity_events=True
            )
        )
        for chunk in chunks:
            if chunk:
                yield audio_request(chunk)

    pcm = int16(speech())
    first = stream_config(RATE, request_id="raw", enable_voice_activity_events=True)
    by_wav, by_raw = await asyncio.gather(
        _collect(stub(channel).StreamingRecognize(wav_requests(), timeout=60)),
        _collect(stub(channel).StreamingRecognize(requests(first, pcm), timeout=60)),
    )
    assert events(by_wav) == events(by_raw)
    assert [kind for kind, _ in events(by_wav)][:1] == [BEGIN]
    wav_finals, raw_finals = finals(by_wav), finals(by_raw)
    assert len(wav_finals) == len(raw_finals) >= 1
    for a, b in zip(wav_finals, raw_finals, strict=True):
        check_final(a, b.utterance_index)
        assert a.start_offset == b.start_offset and a.end_offset == b.end_offset
    assert sec(wav_finals[-1].end_offset) <= len(speech()) / RATE


async def _collect(call) -> list:
    return [r async for r in call]


@needs_speech
async def test_single_utterance_ends_the_stream_without_half_close(tiny_asr):
    _, channel = tiny_asr
    sent = {"silence_chunks": 0}

    async def endless():
        yield stream_config(
            RATE, request_id="single", single_utterance=True, enable_voice_activity_events=True
        )
        pcm = int16(speech())
        for offset in range(0, len(pcm), 3200):
            yield audio_request(pcm[offset : offset + 3200])
        quiet = int16(silence(0.1))
        while True:  # never half-closes: the server must end the call
            yield audio_request(quiet)
            sent["silence_chunks"] += 1
            await asyncio.sleep(0.01)

    call = stub(channel).StreamingRecognize(endless(), timeout=30)
    responses = await asyncio.wait_for(_collect(call), 30)
    assert await call.code() == grpc.StatusCode.OK
    assert sent["silence_chunks"] > 0
    sequence = kinds(responses)
    assert sequence == [BEGIN, END, EOSU, "final"], sequence
    eosu = events(responses)[2][1]
    assert eosu == events(responses)[1][1], "END_OF_SINGLE_UTTERANCE where the speech ended"
    check_final(finals(responses)[0], 0)


@needs_speech
async def test_force_endpoint_produces_a_final_before_half_close(tiny_asr):
    _, channel = tiny_asr
    call = stub(channel).StreamingRecognize(timeout=60)
    await call.write(stream_config(RATE, request_id="force", enable_voice_activity_events=True))
    pcm = int16(speech()[: int(1.6 * RATE)])  # cut inside "go forward ten meters"
    for offset in range(0, len(pcm), 3200):
        await call.write(audio_request(pcm[offset : offset + 3200]))
    control = asr_pb2.StreamingControl(action=asr_pb2.StreamingControl.ACTION_FORCE_ENDPOINT)
    await call.write(asr_pb2.StreamingRecognizeRequest(control=control))

    async def until_final() -> list:
        seen = []
        while True:
            response = await call.read()
            assert response is not grpc.aio.EOF, f"stream ended without a final: {seen}"
            seen.append(response)
            if response.HasField("result") and response.result.is_final:
                return seen

    before_close = await asyncio.wait_for(until_final(), 30)
    await call.done_writing()
    after_close = []
    while (response := await call.read()) is not grpc.aio.EOF:
        after_close.append(response)
    assert await call.code() == grpc.StatusCode.OK
    assert kinds(before_close) == [BEGIN, "final"], "forced: no SPEECH_END"
    result = finals(before_close)[0]
    check_final(result, 0)
    assert ns(result.end_offset) == 1_600_000_000, "the final covers all audio sent"
    assert finals(after_close) == [], "nothing left to finalize at half-close"


@needs_speech
async def test_half_close_finalizes_speech_that_runs_to_the_end(tiny_asr):
    _, channel = tiny_asr
    pcm = int16(speech()[: int(1.9 * RATE)])  # no trailing silence: no endpoint by the VAD
    first = stream_config(RATE, request_id="tail", enable_voice_activity_events=True)
    call = stub(channel).StreamingRecognize(requests(first, pcm), timeout=60)
    responses = await _collect(call)
    assert await call.code() == grpc.StatusCode.OK
    assert kinds(responses) == [BEGIN, "final"]
    result = finals(responses)[0]
    check_final(result, 0)
    assert sec(result.end_offset) == pytest.approx(1.9, abs=0.04)


@needs_speech
async def test_max_utterance_duration_forces_finals(speaking_asr):
    _, channel = speaking_asr
    pcm = int16(np.concatenate([speech(), silence(1.0)]))
    first = stream_config(
        RATE,
        request_id="long-utterance",
        enable_voice_activity_events=True,
        max_utterance_duration=seconds_pb(1.0),
    )
    responses = await _collect(stub(channel).StreamingRecognize(requests(first, pcm), timeout=60))
    # Speech runs from 0.51 s to 2.27 s: cut after ~1 s without a SPEECH_END, the rest of
    # the speech is the next utterance, and the speech ends where the VAD heard it end.
    described = [
        (kind, sec(r.result.start_offset), sec(r.result.end_offset))
        if kind == "final"
        else (kind, sec(r.speech_event.offset))
        for kind, r in zip(kinds(responses), responses, strict=True)
    ]
    assert [k for k in kinds(responses) if k != "final"] == [BEGIN, END], described
    results = finals(responses)
    assert len(results) == 2, f"two utterances of speech, no utterance of silence: {described}"
    for index, result in enumerate(results):
        check_final(result, index)
        assert ns(result.end_offset) > ns(result.start_offset), described
    length = sec(results[0].end_offset) - sec(results[0].start_offset)
    assert 1.0 <= length <= 1.1, described
    assert results[0].end_offset == results[1].start_offset, "the next utterance goes on"
    begin, end = (offset for _, offset in events(responses))
    assert begin == sec(results[0].start_offset)
    assert 2.0 < end < 2.4, f"SPEECH_END where the speech ended (~2.27 s): {described}"


async def test_config_then_half_close_ends_cleanly(tiny_asr):
    _, channel = tiny_asr
    for first in (
        stream_config(RATE, request_id="nothing"),
        asr_pb2.StreamingRecognizeRequest(
            streaming_config=asr_pb2.StreamingRecognitionConfig(request_id="nothing-wav")
        ),
    ):
        call = stub(channel).StreamingRecognize(iter([first]), timeout=30)
        assert await _collect(call) == []
        assert await call.code() == grpc.StatusCode.OK


@needs_speech
async def test_concurrent_streams_share_batches(tiny_asr, tiny_whisper):
    _, channel = tiny_asr
    model = tiny_whisper.name

    def batches(name: str) -> tuple[float, float]:
        count = metric("speechmesh_batch_size_count", model=name)
        singles = metric("speechmesh_batch_size_bucket", model=name, le="1.0")
        return count, singles

    whisper_before, vad_before = batches(model), batches("silero-vad")
    pcm = int16(np.concatenate([speech(), silence(0.8)]))
    streams = 8
    results = await asyncio.gather(
        *(
            _collect(
                stub(channel).StreamingRecognize(
                    requests(
                        stream_config(RATE, request_id=f"s{i}", enable_voice_activity_events=True),
                        pcm,
                    ),
                    timeout=120,
                )
            )
            for i in range(streams)
        )
    )
    for i, responses in enumerate(results):
        assert all(r.request_id == f"s{i}" for r in responses)
        assert kinds(responses) == [BEGIN, END, "final"], (i, kinds(responses))
        check_final(finals(responses)[0], 0)
    whisper_after, vad_after = batches(model), batches("silero-vad")
    multi_whisper = (whisper_after[0] - whisper_before[0]) - (whisper_after[1] - whisper_before[1])
    multi_vad = (vad_after[0] - vad_before[0]) - (vad_after[1] - vad_before[1])
    assert whisper_after[0] > whisper_before[0]
    assert multi_whisper > 0, "no decode batch held more than one stream's final"
    assert multi_vad > 0, "no VAD batch held frames of more than one stream"


async def test_client_cancel_releases_the_stream(tiny_asr):
    _, channel = tiny_asr
    before = active_streams()
    first = stream_config(RATE, request_id="cancel", enable_voice_activity_events=True)

    async def endless():
        yield first
        chunk = int16(tone(0.1))
        while True:
            yield audio_request(chunk)
            await asyncio.sleep(0.02)

    call = stub(channel).StreamingRecognize(endless(), timeout=60)
    await wait_for(lambda: active_streams() == before + 1, "the stream to open")
    await asyncio.sleep(0.3)  # audio flowing
    assert call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED
    await wait_for(lambda: active_streams() == before, "the server to release the stream")
    await still_serves(channel)
