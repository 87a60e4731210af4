"""Bad input is answered with the right code, a message naming the problem and rich details.

Every case runs against the shared tiny-checkpoint server; a user's mistake is
never INTERNAL and never takes the server down.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import soundfile as sf
from google.api import httpbody_pb2
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from speechmesh.asr.v1 import asr_pb2
from speechmesh.audio.v1 import audio_pb2
from tests.asr_client import stub
from tests.conftest import running_asr
from tests.grpc_errors import check_serving, check_status, details, stream_refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT
RATE = 16000


def wav_bytes(seconds: float = 1.0, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


GOOD_WAV = wav_bytes()
# A valid 44-byte header that announces 32000 bytes of samples, none of which follow.
HEADER_ONLY_WAV = GOOD_WAV[:44]
RANDOM_BYTES = np.random.default_rng(1234).integers(0, 256, 8192, dtype=np.uint8).tobytes()


def raw(encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, rate=RATE, channels=0):
    return audio_pb2.AudioFormat(encoding=encoding, sample_rate_hertz=rate, channel_count=channels)


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


@dataclass
class Case:
    id: str
    code: grpc.StatusCode
    #: What the message must mention (case-insensitive).
    mention: str
    #: The BadRequest field violation's field (INVALID_ARGUMENT only).
    field: str = ""
    #: Unary: a RecognizeRequest. Streaming: the request messages, in order.
    request: asr_pb2.RecognizeRequest | None = None
    stream: Callable[[], list[asr_pb2.StreamingRecognizeRequest]] | None = None
    #: Streaming: half-close after the messages (else keep the stream open: the
    #: server must reject the bad message itself, not wait for the end).
    half_close: bool = False
    #: Unary: send as RecognizeFile (HttpBody) instead of Recognize.
    as_file: bool = False


def recognize(audio: bytes = GOOD_WAV, request_id: str = "", **config) -> asr_pb2.RecognizeRequest:
    return asr_pb2.RecognizeRequest(
        request_id=request_id, audio=audio, config=asr_pb2.RecognitionConfig(**config)
    )


def streaming_config(**kwargs) -> asr_pb2.StreamingRecognizeRequest:
    config = kwargs.pop("config", None)
    if config is None:
        config = asr_pb2.RecognitionConfig(audio_format=raw())
    return asr_pb2.StreamingRecognizeRequest(
        streaming_config=asr_pb2.StreamingRecognitionConfig(config=config, **kwargs)
    )


def configured(**config) -> asr_pb2.StreamingRecognizeRequest:
    """A stream's first message with a RecognitionConfig of `config` (raw 16 kHz LINEAR16
    unless it says otherwise)."""
    return streaming_config(config=asr_pb2.RecognitionConfig(**({"audio_format": raw()} | config)))


def audio(data: bytes = bytes(3200)) -> asr_pb2.StreamingRecognizeRequest:
    return asr_pb2.StreamingRecognizeRequest(audio=data)


UNARY_CASES = [
    Case("empty-audio", INVALID, "empty", "audio", recognize(b"")),
    Case("random-bytes", INVALID, "could not decode", "audio", recognize(RANDOM_BYTES)),
    Case("wav-header-only", INVALID, "no samples", "audio", recognize(HEADER_ONLY_WAV)),
    Case("wav-half-header", INVALID, "could not decode", "audio", recognize(GOOD_WAV[:22])),
    Case(
        "raw-rate-0",
        INVALID,
        "sample_rate_hertz",
        "config.audio_format.sample_rate_hertz",
        recognize(bytes(3200), audio_format=raw(rate=0)),
    ),
    Case(
        "raw-rate-1MHz",
        INVALID,
        "1000000",
        "config.audio_format.sample_rate_hertz",
        recognize(bytes(3200), audio_format=raw(rate=1_000_000)),
    ),
    Case(
        "raw-99-channels",
        INVALID,
        "99",
        "config.audio_format.channel_count",
        recognize(bytes(3200), audio_format=raw(channels=99)),
    ),
    Case(
        "raw-partial-frame",
        INVALID,
        "multiple of 4 bytes",
        "audio",
        recognize(bytes(3202), audio_format=raw(channels=2)),
    ),
    Case(
        "raw-float32-nan",
        INVALID,
        "nan",
        "audio",
        recognize(
            np.full(1600, np.nan, dtype="<f4").tobytes(),
            audio_format=raw(audio_pb2.AUDIO_ENCODING_FLOAT32),
        ),
    ),
    Case(
        "unknown-language",
        INVALID,
        "'xx'",
        "config.language_code",
        recognize(language_code="xx"),
    ),
    Case(
        "malformed-language",
        INVALID,
        "BCP-47",
        "config.language_code",
        recognize(language_code="!!"),
    ),
    Case(
        "unknown-model",
        grpc.StatusCode.NOT_FOUND,
        "no-such-model",
        request=recognize(model="no-such-model"),
    ),
    Case("beam-99", INVALID, "99", "config.beam_size", recognize(beam_size=99)),
    Case("beam-negative", INVALID, "-1", "config.beam_size", recognize(beam_size=-1)),
    Case("temperature-5", INVALID, "5", "config.temperature", recognize(temperature=5)),
    Case("temperature-negative", INVALID, "-1", "config.temperature", recognize(temperature=-1)),
    Case("unknown-task", INVALID, "7", "config.task", recognize(task=7)),
    Case("prompt-5000", INVALID, "5000", "config.prompt", recognize(prompt="a" * 5000)),
    Case(
        "hotwords-60",
        INVALID,
        "60",
        "config.hotwords",
        recognize(hotwords=[f"word{i}" for i in range(60)]),
    ),
    Case(
        "hotword-too-long",
        INVALID,
        "50 characters",
        "config.hotwords",
        recognize(hotwords=["x" * 80]),
    ),
    Case("request-id-500", INVALID, "500", "request_id", recognize(request_id="r" * 500)),
    Case("file-empty-body", INVALID, "empty", "audio", recognize(b""), as_file=True),
    Case(
        "file-random-bytes",
        INVALID,
        "could not decode",
        "audio",
        recognize(RANDOM_BYTES),
        as_file=True,
    ),
]

STREAM_CASES = [
    Case(
        "first-message-audio",
        INVALID,
        "first message",
        "streaming_config",
        stream=lambda: [audio()],
    ),
    Case(
        "first-message-empty",
        INVALID,
        "first message",
        "streaming_config",
        stream=lambda: [asr_pb2.StreamingRecognizeRequest()],
    ),
    Case(
        "second-config",
        INVALID,
        "only the first message",
        "streaming_config",
        stream=lambda: [streaming_config(), audio(), streaming_config()],
    ),
    Case(
        "empty-message-mid-stream",
        INVALID,
        "empty message",
        "streaming_request",
        stream=lambda: [streaming_config(), audio(), asr_pb2.StreamingRecognizeRequest()],
    ),
    Case(
        "endpoint-silence-10s",
        INVALID,
        "10 s",
        "streaming_config.endpoint_silence",
        stream=lambda: [streaming_config(endpoint_silence=seconds(10))],
    ),
    Case(
        "vad-threshold-2",
        INVALID,
        "2",
        "streaming_config.vad_threshold",
        stream=lambda: [streaming_config(vad_threshold=2.0)],
    ),
    Case(
        "max-utterance-60s",
        INVALID,
        "60 s",
        "streaming_config.max_utterance_duration",
        stream=lambda: [streaming_config(max_utterance_duration=seconds(60))],
    ),
    Case(
        "interim-interval-10ms",
        INVALID,
        "0.01 s",
        "streaming_config.interim_interval",
        stream=lambda: [streaming_config(interim_interval=seconds(0.01))],
    ),
    Case(
        "raw-rate-0",
        INVALID,
        "sample_rate_hertz",
        "streaming_config.config.audio_format.sample_rate_hertz",
        stream=lambda: [configured(audio_format=raw(rate=0))],
    ),
    Case(
        "not-a-wav-stream",
        INVALID,
        "RIFF",
        "audio",
        stream=lambda: [
            streaming_config(config=asr_pb2.RecognitionConfig()),
            audio(b"\x01\x02" * 1600),
        ],
    ),
    Case(
        "wav-stream-ends-in-header",
        INVALID,
        "WAV header",
        "audio",
        stream=lambda: [streaming_config(config=asr_pb2.RecognitionConfig()), audio(GOOD_WAV[:30])],
        half_close=True,
    ),
    Case(
        "unknown-model",
        grpc.StatusCode.NOT_FOUND,
        "no-such-model",
        stream=lambda: [configured(model="no-such-model")],
    ),
    # The request of a stream is a StreamingRecognizeRequest: field paths start at
    # streaming_config, as they do for streaming_config.config.audio_format.
    Case(
        "unknown-language",
        INVALID,
        "'xx'",
        "streaming_config.config.language_code",
        stream=lambda: [configured(language_code="xx")],
    ),
    Case(
        "request-id-500",
        INVALID,
        "500",
        "streaming_config.request_id",
        stream=lambda: [streaming_config(request_id="r" * 500)],
    ),
]


def check_error(error: grpc.aio.AioRpcError, case: Case) -> None:
    check_status(error, case.code, case.mention, case.field, label=case.id)
    if case.code == grpc.StatusCode.NOT_FOUND:
        (info,) = details(error, error_details_pb2.ResourceInfo)
        assert (info.resource_type, info.resource_name) == ("model", "no-such-model")


@pytest.mark.parametrize("case", UNARY_CASES, ids=[c.id for c in UNARY_CASES])
async def test_unary_bad_input(tiny_asr, case: Case):
    _, channel = tiny_asr
    asr = stub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if case.as_file:
            request = asr_pb2.RecognizeFileRequest(
                request_id=case.request.request_id,
                config=case.request.config,
                audio=httpbody_pb2.HttpBody(content_type="audio/wav", data=case.request.audio),
            )
            await asr.RecognizeFile(request, timeout=20)
        else:
            await asr.Recognize(case.request, timeout=20)
    check_error(raised.value, case)


@pytest.mark.parametrize("case", STREAM_CASES, ids=[c.id for c in STREAM_CASES])
async def test_streaming_bad_input(tiny_asr, case: Case):
    _, channel = tiny_asr
    # Unless half-closed, the stream stays open past the call's timeout: the server rejects.
    keep_open_s = 0 if case.half_close else 30
    error = await stream_refused(
        stub(channel).StreamingRecognize, case.stream(), timeout=10, keep_open_s=keep_open_s
    )
    check_error(error, case)


async def test_translate_task_is_fine_on_a_multilingual_model(tiny_asr):
    _, channel = tiny_asr
    response = await stub(channel).Recognize(
        recognize(task=asr_pb2.RECOGNITION_TASK_TRANSLATE, request_id="translate"), timeout=60
    )
    assert response.request_id == "translate"
    assert response.audio_duration.ToNanoseconds() == 1_000_000_000


async def test_message_over_the_size_limit_is_resource_exhausted(tiny_whisper):
    async with running_asr(tiny_whisper, max_message_mb=1) as (_, channel):
        request = recognize(audio=bytes(2 << 20), audio_format=raw())
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub(channel).Recognize(request, timeout=20)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert raised.value.details().strip()
        assert "larger than max" in raised.value.details()
        # just under the limit still works
        small = recognize(audio=wav_bytes(1.0))
        assert (await stub(channel).Recognize(small, timeout=60)).audio_duration.seconds == 1


async def test_full_queue_is_resource_exhausted_with_retry_info(tiny_whisper):
    async with running_asr(tiny_whisper, max_queue=1, max_batch_size=1) as (_, channel):
        asr = stub(channel)
        request = recognize(audio=wav_bytes(1.0))
        outcomes = await asyncio.gather(
            *(asr.Recognize(request, timeout=60) for _ in range(10)), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        served = [o for o in outcomes if isinstance(o, asr_pb2.RecognizeResponse)]
        assert refused, "10 concurrent calls on a queue of 1 were all accepted"
        assert served, "every call was refused"
        assert len(refused) + len(served) == 10, outcomes
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            assert "retry" in error.details()
            status = rpc_status.from_call(error)
            assert status is not None
            retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
            assert len(retry) == 1, status.details
            info = error_details_pb2.RetryInfo()
            retry[0].Unpack(info)
            assert info.retry_delay.ToNanoseconds() > 0
        for response in served:
            assert response.audio_duration.seconds == 1


async def test_server_still_serves_after_bad_input(tiny_asr):
    _, channel = tiny_asr
    await check_serving(channel, "", "speechmesh.asr.v1.AsrService")
    response = await stub(channel).Recognize(recognize(request_id="after"), timeout=60)
    assert response.request_id == "after"
    assert response.audio_duration.ToNanoseconds() == 1_000_000_000
