"""BatchSynthesize's job kind (speechmesh.tts.batch) run directly, as the runner would, on tiny
random CSM (default, clones) and VITS (presets) loaded in-process: the same speech as Synthesize,
encoded once into the "audio" blob, a stored voice checked against its owner when the job is
created, progress sentence by sentence, background priority, the renderings and every bad
request with its code and field."""

from __future__ import annotations

import io

import grpc
import pytest
import soundfile as sf
from google.protobuf import json_format

from speechmesh.audio.v1 import audio_pb2
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.inference.batcher import PRIORITY_BACKGROUND
from speechmesh.operations.job import Blob
from speechmesh.runtime import errors
from speechmesh.tts.batch import MAX_TEXT_CHARACTERS, METHOD, batch_synthesize_kind
from speechmesh.tts.resolver import VoiceResolver
from speechmesh.tts.servicer import TtsServicer
from speechmesh.tts.synthesizer import INLINE_SPLIT_CHARACTERS
from speechmesh.tts.v1 import tts_pb2
from speechmesh.tts.voice_library import NewVoice, VoiceLibrary
from tests.sounds import REFERENCE
from tests.unit.jobs import (
    InlineContext,
    PrioritySpy,
    assert_progress_grows_to_done,
    blob_loader,
    field_of,
)

TEXT = "One sentence here. Then a second one! And a third?"


@pytest.fixture(scope="module")
async def tts(tiny_tts_models):
    """(models, kind, servicer), with the stored voice voices/batch-voice of "alice"."""
    models = tiny_tts_models
    library = VoiceLibrary(VoiceResolver(models, models.settings))
    await library.create(NewVoice("batch-voice", "This is my voice.", REFERENCE), "alice")
    yield (
        models,
        batch_synthesize_kind(models, models.settings),
        TtsServicer(models, models.settings, None),
    )
    await library.delete("voices/batch-voice", "alice")


@pytest.fixture(scope="module")
def vits(tiny_tts_models):
    (model,) = [m for m in tiny_tts_models.models.values() if m.engine.family == "vits"]
    return model


class CallContext:
    """The little of a grpc.aio context the TTS servicer reads: who calls."""

    def __init__(self, header: str, owner: str):
        self.metadata = ((header, owner),) if owner else ()

    def invocation_metadata(self):
        return self.metadata


def config(**fields) -> tts_pb2.SynthesisConfig:
    return tts_pb2.SynthesisConfig(**{"seed": 7, **fields})


def request(text: str = TEXT, **fields) -> tts_pb2.BatchSynthesizeRequest:
    return tts_pb2.BatchSynthesizeRequest(text=text, config=config(**fields), request_id="b3")


async def synthesize(servicer, owner: str, text: str = TEXT, **fields):
    """What the unary Synthesize answers to `owner` for the same text and config."""
    unary = tts_pb2.SynthesizeRequest(text=text, config=config(**fields), request_id="b3")
    context = CallContext(servicer.settings.identity_header, owner)
    return await servicer.Synthesize(unary, context)


def test_the_kind_describes_batch_synthesize(tts):
    _, kind, _ = tts
    assert kind.method == METHOD == "speechmesh.tts.v1.TtsService/BatchSynthesize"
    assert kind.request_type is tts_pb2.BatchSynthesizeRequest
    assert kind.response_type is tts_pb2.BatchSynthesizeResponse
    assert kind.inputs(request()) == []
    assert kind.check(request()) == 3 and kind.check_for_owner is not None


async def test_the_text_is_spoken_as_synthesize_speaks_it_encoded_once(tts):
    _, kind, servicer = tts
    outcome = await kind.run(request(), InlineContext())
    unary = await synthesize(servicer, "")
    assert outcome.blobs == {"audio": Blob(unary.audio, "audio/wav")}
    response = outcome.response
    assert response == tts_pb2.BatchSynthesizeResponse(
        audio_duration=unary.audio_duration,
        sample_rate_hertz=unary.sample_rate_hertz,
        audio_size_bytes=len(unary.audio),
        audio_content_type="audio/wav",
        sentences=unary.sentences,
        model=unary.model,
        seed=7,
    )
    assert [s.text for s in response.sentences] == [
        "One sentence here.",
        "Then a second one!",
        "And a third?",
    ]


async def test_a_stored_voice_of_the_owner_in_another_encoding(tts):
    _, kind, servicer = tts
    mp3 = audio_pb2.OutputAudioConfig(encoding=audio_pb2.OUTPUT_ENCODING_MP3)
    fields = dict(voice="voices/batch-voice", output_audio_config=mp3)
    assert await kind.validate(request(**fields), "alice") == 3
    outcome = await kind.run(request(**fields), InlineContext(owner="alice"))
    unary = await synthesize(servicer, "alice", **fields)
    assert outcome.blobs["audio"] == Blob(unary.audio, "audio/mpeg")
    assert outcome.response.audio_content_type == "audio/mpeg"
    assert outcome.response.audio_duration == unary.audio_duration
    # Somebody else's job cannot use alice's voice, when it is created or when it runs.
    for attempt in (
        kind.validate(request(**fields), "bob"),
        kind.run(request(**fields), InlineContext("bob")),
    ):
        with pytest.raises(errors.ApiError) as error:
            await attempt
        assert error.value.code == grpc.StatusCode.NOT_FOUND
        assert "voices/batch-voice" in error.value.message


async def test_a_preset_voice_and_a_text_split_off_the_event_loop(tts, vits):
    _, kind, servicer = tts
    preset = vits.engine.preset_voices[0].name
    text = " ".join(f"Sentence number {i} is here." for i in range(80))
    assert len(text) > INLINE_SPLIT_CHARACTERS
    ctx = InlineContext()
    outcome = await kind.run(request(text, preset_voice=preset), ctx)
    unary = await synthesize(servicer, "", text, preset_voice=preset)
    assert outcome.blobs["audio"].data == unary.audio
    assert outcome.response.model == vits.name == unary.model
    assert_progress_grows_to_done(ctx.progress, len(unary.sentences))


async def test_progress_sentence_by_sentence_at_background_priority(tts, monkeypatch):
    models, kind, _ = tts
    spy = PrioritySpy(models.default.batcher, monkeypatch)
    ctx = InlineContext()
    outcome = await kind.run(request(), ctx)
    assert spy.priorities == [PRIORITY_BACKGROUND] * 3
    progress = ctx.progress
    assert_progress_grows_to_done(progress, 3)
    assert sorted({s.processed_items for s in progress.history}) == [0, 1, 2, 3]
    assert progress.total_audio_s is None  # synthesis: unknown until the end
    duration = outcome.response.audio_duration
    assert progress.processed_audio_s == pytest.approx(duration.ToMilliseconds() / 1000, abs=0.001)


# -- results -----------------------------------------------------------------------------------


async def test_renderings(tts):
    _, kind, _ = tts
    outcome = await kind.run(request(), InlineContext())
    load = blob_loader(outcome.blobs)
    for fmt in (ops_pb2.RESULT_FORMAT_UNSPECIFIED, ops_pb2.RESULT_FORMAT_AUDIO):
        content_type, body = await kind.render(outcome.response, fmt, 5, load)  # index ignored
        assert content_type == "audio/wav" and body == outcome.blobs["audio"].data
        info = sf.info(io.BytesIO(body))
        assert info.samplerate == outcome.response.sample_rate_hertz
    content_type, body = await kind.render(outcome.response, ops_pb2.RESULT_FORMAT_JSON, 0, load)
    assert content_type == "application/json"
    assert json_format.Parse(body, tts_pb2.BatchSynthesizeResponse()) == outcome.response
    for fmt in (ops_pb2.RESULT_FORMAT_TEXT, ops_pb2.RESULT_FORMAT_SRT, ops_pb2.RESULT_FORMAT_VTT):
        with pytest.raises(errors.ApiError) as error:
            await kind.render(outcome.response, fmt, 0, load)
        assert field_of(error) == "format"
    with pytest.raises(errors.ApiError) as error:
        await kind.render(outcome.response, ops_pb2.RESULT_FORMAT_AUDIO, 0, blob_loader({}))
    assert error.value.code == grpc.StatusCode.NOT_FOUND


# -- bad requests ------------------------------------------------------------------------------


BAD_REQUESTS = [
    (request(""), "text"),
    (request(" \n "), "text"),
    (request("a" * (MAX_TEXT_CHARACTERS + 1)), "text"),
    (request(speed=3.0), "config.speed"),
    (request(temperature=2.5), "config.temperature"),
    (
        request(output_audio_config=audio_pb2.OutputAudioConfig(sample_rate_hertz=5)),
        "config.output_audio_config.sample_rate_hertz",
    ),
    (request(voice="not-a-voice-name"), "config.voice"),
    (request(preset_voice="nobody-has-this-one"), "config.preset_voice"),
]


@pytest.mark.parametrize(("job", "field"), BAD_REQUESTS)
async def test_bad_requests_are_invalid_argument_naming_the_field(tts, job, field):
    _, kind, _ = tts
    with pytest.raises(errors.ApiError) as error:
        await kind.validate(job, "alice")
    assert field_of(error) == field
    if field != "config.voice":  # its name is checked with the owner's voices
        with pytest.raises(errors.ApiError) as error:
            kind.check(job)
        assert field_of(error) == field


async def test_what_only_the_resolver_knows_is_checked_with_the_owner(tts):
    _, kind, _ = tts
    with pytest.raises(errors.ApiError) as error:
        await kind.validate(request(language_code="xx"), "alice")
    assert field_of(error) == "config.language_code"
    with pytest.raises(errors.ApiError) as error:
        await kind.validate(request(model="no-such-model"), "alice")
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(errors.ApiError) as error:
        await kind.validate(request(voice="voices/nobody"), "alice")
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    job = request()
    job.request_id = "r" * 129
    with pytest.raises(errors.ApiError) as error:
        await kind.validate(job, "alice")
    assert field_of(error) == "request_id"
