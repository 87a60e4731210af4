"""BatchTranslateSpeech's job kind (speechmesh.translate.batch) run directly, as the runner
would, on the tiny random SeamlessM4T v2 loaded in-process: the same translations as
TranslateSpeech with each file's speech kept beside the response, one file's failure kept in its
result, progress to 100 %, background priority, the renderings and every bad request."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import soundfile as sf
from google.protobuf import json_format
from google.rpc import code_pb2

from speechmesh.audio.v1 import audio_pb2
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.inference.batcher import PRIORITY_BACKGROUND
from speechmesh.operations import results
from speechmesh.operations.job import Blob
from speechmesh.runtime import errors
from speechmesh.translate.batch import METHOD, batch_translate_speech_kind
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.models import TranslateModels
from speechmesh.translate.servicer import TranslateServicer
from speechmesh.translate.v1 import translate_pb2
from tests.sounds import voice_like, wav
from tests.unit.jobs import (
    InlineContext,
    PrioritySpy,
    assert_progress_grows_to_done,
    blob_loader,
    field_of,
    srt_cues,
    vtt_cues,
)

TEXT, SPEECH = translate_pb2.MODALITY_TEXT, translate_pb2.MODALITY_SPEECH
SHORT = wav(voice_like(1.5))
#: Longer than the model's window (30 s): two segments.
LONG = wav(voice_like(40.0, seed=1))
NOT_AUDIO = b"not audio at all"


@pytest.fixture(scope="module")
async def translate(tiny_seamless_checkpoint):
    """(models, kind, servicer) over the tiny Seamless."""
    settings = TranslateSettings(model=str(tiny_seamless_checkpoint))
    models = TranslateModels(settings)
    await models.load()
    kind = batch_translate_speech_kind(models, settings)
    yield models, kind, TranslateServicer(models, settings, None, None)
    await models.close()


def config(**fields) -> translate_pb2.SpeechTranslationConfig:
    return translate_pb2.SpeechTranslationConfig(**{"target_language_code": "fr", **fields})


def request(*contents: bytes, **fields) -> translate_pb2.BatchTranslateSpeechRequest:
    return translate_pb2.BatchTranslateSpeechRequest(
        config=config(**fields),
        files=[ops_pb2.AudioInput(content=c) for c in contents],
        request_id="batch-2",
    )


async def translate_speech(
    servicer, data: bytes, **fields
) -> translate_pb2.TranslateSpeechResponse:
    """What the unary TranslateSpeech answers for the same recording and config."""
    unary = translate_pb2.TranslateSpeechRequest(
        config=config(**fields), audio=data, request_id="batch-2"
    )
    return await servicer.TranslateSpeech(unary, None)


def test_the_kind_describes_batch_translate_speech(translate):
    _, kind, _ = translate
    assert kind.method == METHOD == "speechmesh.translate.v1.TranslateService/BatchTranslateSpeech"
    assert kind.request_type is translate_pb2.BatchTranslateSpeechRequest
    assert kind.response_type is translate_pb2.BatchTranslateSpeechResponse
    job = request(SHORT, SHORT, SHORT, output_modalities=[TEXT, SPEECH])
    assert kind.check(job) == 3 and kind.inputs(job) == list(job.files)


async def test_speech_is_translated_as_translate_speech_does_its_audio_kept_beside(translate):
    _, kind, servicer = translate
    fields = dict(
        output_modalities=[TEXT, SPEECH],
        source_language_code="en",
        enable_source_transcript=True,
        voice="speaker-1",
    )
    files = (SHORT, NOT_AUDIO, wav(voice_like(1.0, seed=5)))
    outcome = await kind.run(request(*files, **fields), InlineContext())
    response = outcome.response
    assert [r.source for r in response.results] == ["content[0]", "content[1]", "content[2]"]
    assert sorted(outcome.blobs) == ["audio/0", "audio/2"]
    for index in (0, 2):
        result = response.results[index]
        unary = await translate_speech(servicer, files[index], **fields)
        blob = outcome.blobs[f"audio/{index}"]
        assert blob == Blob(unary.translated_audio, "audio/wav")
        assert result.translated_audio_size_bytes == len(unary.translated_audio) > 0
        unary.ClearField("translated_audio")
        assert result.response == unary
        assert result.response.translated_audio_sample_rate_hertz == 16000
    failed = response.results[1]
    assert failed.error.code == code_pb2.INVALID_ARGUMENT
    assert failed.error.message.startswith("files[1]: ")
    assert not failed.HasField("response") and failed.translated_audio_size_bytes == 0
    total = sum(results.seconds(response.results[i].response.audio_duration) for i in (0, 2))
    assert results.seconds(response.total_audio_duration) == pytest.approx(total, abs=0.002)


async def test_text_only_translation_keeps_no_audio(translate):
    _, kind, servicer = translate
    outcome = await kind.run(request(SHORT), InlineContext())
    (result,) = outcome.response.results
    assert not outcome.blobs and result.translated_audio_size_bytes == 0
    assert result.response == await translate_speech(servicer, SHORT)
    load = blob_loader(outcome.blobs)
    content_type, body = await kind.render(
        outcome.response, ops_pb2.RESULT_FORMAT_UNSPECIFIED, 0, load
    )
    assert content_type == "application/json"
    parsed = json_format.Parse(body, translate_pb2.BatchTranslateSpeechResponse())
    assert parsed == outcome.response
    with pytest.raises(errors.ApiError) as error:
        await kind.render(outcome.response, ops_pb2.RESULT_FORMAT_AUDIO, 0, load)
    assert field_of(error) == "format" and "MODALITY_SPEECH" in error.value.message


async def test_progress_grows_to_100_and_every_job_is_background(translate, monkeypatch):
    models, kind, _ = translate
    spy = PrioritySpy(models.default.batcher, monkeypatch)
    ctx = InlineContext()
    await kind.run(request(LONG, SHORT, output_modalities=[SPEECH]), ctx)
    assert_progress_grows_to_done(ctx.progress, 2)
    assert ctx.progress.processed_audio_s == pytest.approx(41.5, abs=0.01)
    assert ctx.progress.total_audio_s == pytest.approx(41.5, abs=0.01)
    inside = {round(s.percent, 3) for s in ctx.progress.history if 0 < s.percent < 50}
    assert inside, "no progress inside the long file"
    assert len(spy.priorities) == 3  # two segments and one
    assert set(spy.priorities) == {PRIORITY_BACKGROUND}


# -- results -----------------------------------------------------------------------------------


async def test_renderings_of_one_file(translate):
    _, kind, _ = translate
    fields = dict(output_modalities=[TEXT, SPEECH], output_audio_config=_flac())
    outcome = await kind.run(request(SHORT, LONG, **fields), InlineContext())
    response, load = outcome.response, blob_loader(outcome.blobs)
    for fmt in (ops_pb2.RESULT_FORMAT_UNSPECIFIED, ops_pb2.RESULT_FORMAT_AUDIO):
        content_type, body = await kind.render(response, fmt, 1, load)
        assert content_type == "audio/flac" and body == outcome.blobs["audio/1"].data
        audio = sf.info(io.BytesIO(body))
        seconds = results.seconds(response.results[1].response.translated_audio_duration)
        assert audio.duration == pytest.approx(seconds, abs=0.01)
    translation = response.results[1].response
    content_type, body = await kind.render(response, ops_pb2.RESULT_FORMAT_TEXT, 1, load)
    assert content_type == "text/plain; charset=utf-8"
    assert body.decode() == translation.translated_text + "\n"
    shown = [s for s in translation.segments if s.translated_text.strip()]
    assert len(translation.segments) == 2
    for fmt, parse in (
        (ops_pb2.RESULT_FORMAT_SRT, srt_cues),
        (ops_pb2.RESULT_FORMAT_VTT, vtt_cues),
    ):
        _, body = await kind.render(response, fmt, 1, load)
        cues = parse(body.decode())
        assert len(cues) == len(shown)
        for (start, end, text), segment in zip(cues, shown, strict=True):
            # Subtitles of the recording: the times of the source segments.
            assert start == pytest.approx(results.seconds(segment.start_offset), abs=0.001)
            assert end == pytest.approx(results.seconds(segment.end_offset), abs=0.001)
            # Wrapped at 42 characters (long words too).
            assert "".join(text.split()) == "".join(segment.translated_text.split())


def _flac() -> audio_pb2.OutputAudioConfig:
    return audio_pb2.OutputAudioConfig(encoding=audio_pb2.OUTPUT_ENCODING_FLAC)


async def test_results_the_job_does_not_have(translate):
    _, kind, _ = translate
    response = translate_pb2.BatchTranslateSpeechResponse(
        results=[
            translate_pb2.BatchTranslateSpeechFileResult(
                source="content[0]",
                response=translate_pb2.TranslateSpeechResponse(translated_text="Bonjour."),
                translated_audio_size_bytes=10,
            ),
            translate_pb2.BatchTranslateSpeechFileResult(
                source="content[1]", error=errors.invalid_argument("files[1]", "bad").to_proto()
            ),
        ]
    )
    load = blob_loader({})
    cases = [
        (ops_pb2.RESULT_FORMAT_TEXT, 2, "file_index"),
        (ops_pb2.RESULT_FORMAT_AUDIO, 1, "file_index"),
        (ops_pb2.RESULT_FORMAT_UNSPECIFIED, 1, "file_index"),  # AUDIO: the job spoke
        (9, 0, "format"),
    ]
    for fmt, index, field in cases:
        with pytest.raises(errors.ApiError) as error:
            await kind.render(response, fmt, index, load)
        assert field_of(error) == field
    with pytest.raises(errors.ApiError) as error:  # the blob went away
        await kind.render(response, ops_pb2.RESULT_FORMAT_AUDIO, 0, load)
    assert error.value.code == grpc.StatusCode.NOT_FOUND


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (request(), "files"),
        (request(*[SHORT] * 101), "files"),
        (request(SHORT, target_language_code=""), "config.target_language_code"),
        (request(SHORT, target_language_code="xx-nowhere"), "config.target_language_code"),
        (request(SHORT, output_modalities=[0]), "config.output_modalities"),
        (request(SHORT, output_modalities=[SPEECH], voice="nobody"), "config.voice"),
        (
            request(
                SHORT,
                output_modalities=[SPEECH],
                output_audio_config=audio_pb2.OutputAudioConfig(sample_rate_hertz=5),
            ),
            "config.output_audio_config.sample_rate_hertz",
        ),
        (
            request(
                SHORT,
                audio_format=audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_MULAW),
            ),
            "config.audio_format.sample_rate_hertz",
        ),
        (request(SHORT, enable_source_transcript=True), "config.source_language_code"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(translate, job, field):
    _, kind, _ = translate
    with pytest.raises(errors.ApiError) as error:
        kind.check(job)
    assert field_of(error) == field


def test_a_missing_source_and_an_unknown_model(translate):
    _, kind, _ = translate
    job = request(SHORT)
    job.files.add()
    with pytest.raises(errors.ApiError) as error:
        kind.check(job)
    assert field_of(error) == "files[1]"
    with pytest.raises(errors.ApiError) as error:
        kind.check(request(SHORT, model="no-such-model"))
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_raw_input_and_content_are_checked(translate):
    _, kind, _ = translate
    job = request(SHORT)
    job.files.add(content=b"")
    with pytest.raises(errors.ApiError) as error:
        kind.check(job)
    assert field_of(error) == "files[1].content"
    pcm = (np.zeros(8000) * 0).astype("<i2").tobytes()
    fmt = audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=8000)
    assert kind.check(request(pcm, audio_format=fmt)) == 1
