"""SenseVoice beside Whisper in one ASR service (issue 16), over gRPC: the tiny random SenseVoice
checkpoint (`speechmesh models tiny sensevoice`, the published folder layout) served as
"sensevoice" next to the real whisper-tiny.en as the default.

Random weights give noise for text, so what is checked is the contract: ListModels tells the two
engines apart by what they can do; a Recognize names its model and carries exactly what the
engine decoded (text, times, emotion, audio events, language) through the recognizer and the
proto mapping; long audio is cut at pauses into windows; text normalization on and off reach
the engine as different queries; streams give interims and finals; OpenAI's face serves it; and
what SenseVoice cannot do is INVALID_ARGUMENT on the field that asked for it.
"""

from __future__ import annotations

import json

import grpc
import pytest

from speechmesh.asr.mapping import AUDIO_EVENTS, EMOTIONS, decode_options
from speechmesh.asr.models import AsrModels
from speechmesh.asr.v1 import asr_pb2
from speechmesh.dsp.audio import decode_audio
from tests.asr_client import chunked, pcm16, stream_config, stub
from tests.conftest import AUDIO, TINY_EN, requires_shared, running_asr, tiny_checkpoint
from tests.grpc_errors import check_status

pytestmark = requires_shared

tiny_sensevoice = tiny_checkpoint(
    "sensevoice", "tiny-sensevoice", "A tiny random SenseVoiceSmall checkpoint, built offline."
)
GOFORWARD = AUDIO / "goforward.wav"
MULTILINGUAL = AUDIO / "fw" / "multilingual.mp3"  # 60 s: English, then German, a pause between


@pytest.fixture(scope="module")
async def served(tiny_sensevoice):
    async with running_asr(TINY_EN, extra_models=f"sensevoice={tiny_sensevoice}") as (
        host,
        channel,
    ):
        yield _models_of(host), stub(channel)


def _models_of(host) -> AsrModels:
    """The AsrModels the service's app loads (its load hook closes over them)."""
    cells = [cell.cell_contents for cell in host.app.load.__closure__ or ()]
    return next(c for c in cells if isinstance(c, AsrModels))


async def recognize(asr, path, **config) -> asr_pb2.RecognizeResponse:
    request = asr_pb2.RecognizeRequest(
        config=asr_pb2.RecognitionConfig(model="sensevoice", **config), audio=path.read_bytes()
    )
    return await asr.Recognize(request, timeout=120)


async def test_list_models_tells_the_engines_apart(served):
    _, asr = served
    reply = await asr.ListModels(asr_pb2.ListModelsRequest(), timeout=10)
    whisper, sensevoice = reply.models
    assert (whisper.name, whisper.engine, whisper.default) == ("whisper-tiny.en", "whisper", True)
    assert (sensevoice.name, sensevoice.engine, sensevoice.runtime) == (
        "sensevoice",
        "sensevoice",
        "torch",
    )
    assert sensevoice.random_weights and sensevoice.memory_bytes > 0
    assert set(sensevoice.language_codes) == {"zh", "yue", "en", "ja", "ko"}
    assert sensevoice.supports_language_detection and not sensevoice.supports_translation
    assert sensevoice.supports_emotion_recognition and sensevoice.supports_audio_event_detection
    assert sensevoice.supports_text_normalization_control
    assert not whisper.supports_emotion_recognition and not whisper.supports_audio_event_detection
    assert not whisper.supports_text_normalization_control


async def test_recognize_carries_what_the_engine_decoded(served):
    models, asr = served
    for path in (GOFORWARD, MULTILINGUAL):
        reply = await recognize(asr, path)
        assert reply.model == "sensevoice"
        # the same recognizer in-process, on the same samples and options
        model = models.get("sensevoice")
        options = decode_options(model, asr_pb2.RecognitionConfig(model="sensevoice"))
        samples = decode_audio(path.read_bytes(), None, 16000).samples
        expected = await model.recognizer.recognize(samples, options)
        assert [s.text for s in reply.segments] == [s.text for s in expected.segments]
        assert reply.transcript == expected.text
        assert reply.language_code == expected.language
        assert reply.language_code in {"zh", "yue", "en", "ja", "ko"}
        for got, want in zip(reply.segments, expected.segments, strict=True):
            assert got.emotion == EMOTIONS[want.emotion]
            assert abs(got.start_offset.ToTimedelta().total_seconds() - want.start) < 1e-3
            assert abs(got.end_offset.ToTimedelta().total_seconds() - want.end) < 1e-3
        assert {e.type for e in reply.audio_events} == {
            AUDIO_EVENTS[e] for e, _, _ in expected.events
        }
        assert all(
            e.end_offset.ToNanoseconds() >= e.start_offset.ToNanoseconds()
            for e in reply.audio_events
        )
    # 60 s is more than one window: cut at pauses, pieces in order
    times = [(s.start_offset.ToNanoseconds(), s.end_offset.ToNanoseconds()) for s in reply.segments]
    assert len(times) >= 2 and times == sorted(times)
    assert times[-1][1] / 1e9 > 30


async def test_text_normalization_reaches_the_engine_as_its_query(served):
    models, asr = served
    written = await recognize(asr, GOFORWARD)
    spoken = await recognize(asr, GOFORWARD, disable_text_normalization=True)
    model = models.get("sensevoice")
    on = decode_options(model, asr_pb2.RecognitionConfig())
    off = decode_options(model, asr_pb2.RecognitionConfig(disable_text_normalization=True))
    assert on.text_normalization and not off.text_normalization
    assert on.batch_key() != off.batch_key()  # never decoded in one pass
    # the <|withitn|> and <|woitn|> queries make a different input, hence (random) output
    assert (written.transcript, [s.confidence for s in written.segments]) != (
        spoken.transcript,
        [s.confidence for s in spoken.segments],
    )
    # Whisper ignores it
    request = asr_pb2.RecognizeRequest(
        config=asr_pb2.RecognitionConfig(disable_text_normalization=True),
        audio=GOFORWARD.read_bytes(),
    )
    assert "forward" in (await asr.Recognize(request, timeout=60)).transcript.lower()


@pytest.mark.parametrize(
    "config, field",
    [
        ({"language_code": "fr"}, "config.language_code"),
        ({"task": asr_pb2.RECOGNITION_TASK_TRANSLATE}, "config.task"),
        ({"prompt": "Dashwood"}, "config.prompt"),
        ({"hotwords": ["Dashwood"]}, "config.prompt"),
        ({"beam_size": 4}, "config.beam_size"),
        ({"temperature": 0.5}, "config.temperature"),
    ],
)
async def test_what_sensevoice_cannot_do_is_invalid_argument(served, config, field):
    _, asr = served
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await recognize(asr, GOFORWARD, **config)
    check_status(raised.value, grpc.StatusCode.INVALID_ARGUMENT, "SenseVoice", field)


async def test_languages_it_knows_are_accepted_in_bcp47(served):
    _, asr = served
    for code in ("en", "zh-CN", "yue", "ja", "ko-KR"):
        reply = await recognize(asr, GOFORWARD, language_code=code)
        assert reply.language_probability == 1.0


async def test_a_stream_gives_interims_and_finals(served):
    _, asr = served
    data, rate = pcm16(GOFORWARD)
    config = asr_pb2.RecognitionConfig(model="sensevoice")
    first = stream_config(
        rate, config=config, interim_results=True, enable_voice_activity_events=True
    )
    results = []
    async for reply in asr.StreamingRecognize(chunked(first, data, rate, speed=2.0), timeout=120):
        if reply.HasField("result"):
            results.append(reply.result)
    finals = [r for r in results if r.is_final]
    assert len(finals) == 1 and finals[0].transcript
    assert finals[0].language_code in {"zh", "yue", "en", "ja", "ko"}
    assert results[-1].is_final  # interims, if any, come first
    assert all(r.emotion in EMOTIONS.values() for r in finals)


async def test_openai_face_serves_it(served):
    from tests.service.test_asr_openai import bad_request, upload

    _, asr = served
    reply = await asr.CreateTranscription(
        upload(
            GOFORWARD.read_bytes(), ("model", "sensevoice"), ("response_format", "verbose_json")
        ),
        timeout=60,
    )
    answer = json.loads(reply.data)
    samples, rate = pcm16(GOFORWARD)
    assert answer["duration"] == pytest.approx(len(samples) / 2 / rate, abs=0.01)
    assert answer["language"]  # a language name, detected
    # and refuses in its terms what SenseVoice cannot do
    code, named = await bad_request(
        asr.CreateTranslation(upload(GOFORWARD.read_bytes(), ("model", "sensevoice")), timeout=60)
    )
    assert (code, named) == (grpc.StatusCode.INVALID_ARGUMENT, "model")
