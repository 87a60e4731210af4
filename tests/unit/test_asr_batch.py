"""BatchRecognize's job kind (speechmesh.asr.batch) run directly, as the runner would, on the tiny
random Whisper loaded in-process: the same transcripts as Recognize, one file's failure kept in
its result, progress that grows window by window to 100 %, background priority, the renderings
and every bad request with its code and field."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2

from speechmesh.asr.batch import METHOD, batch_recognize_kind
from speechmesh.asr.config import AsrSettings
from speechmesh.asr.models import AsrModels
from speechmesh.asr.servicer import AsrServicer
from speechmesh.asr.v1 import asr_pb2
from speechmesh.audio.v1 import audio_pb2
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.inference.background import background_slots
from speechmesh.inference.batcher import PRIORITY_BACKGROUND
from speechmesh.operations import results
from speechmesh.operations.job import JobKind
from speechmesh.runtime import errors
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

SHORT = wav(voice_like(3.0))
#: Long enough for three windows of the model (30 s): progress inside one file.
LONG = wav(np.concatenate([voice_like(20.0, seed=i) for i in range(4)]))
NOT_AUDIO = b"not audio at all"


@pytest.fixture(scope="module")
async def asr(tiny_whisper):
    """(models, kind, servicer) over the tiny Whisper, one window a batch (so windows finish
    one after another)."""
    settings = AsrSettings(model=str(tiny_whisper), max_batch_size=1)
    models = AsrModels(settings)
    await models.load()
    yield models, batch_recognize_kind(models, settings), AsrServicer(models, settings, None, None)
    await models.close()


def request(*contents: bytes, **config) -> asr_pb2.BatchRecognizeRequest:
    return asr_pb2.BatchRecognizeRequest(
        config=asr_pb2.RecognitionConfig(**config),
        files=[ops_pb2.AudioInput(content=c) for c in contents],
        request_id="batch-1",
    )


async def recognize(servicer: AsrServicer, data: bytes, **config) -> asr_pb2.RecognizeResponse:
    """What the unary Recognize answers for the same recording and config."""
    unary = asr_pb2.RecognizeRequest(
        config=asr_pb2.RecognitionConfig(**config), audio=data, request_id="batch-1"
    )
    return await servicer.Recognize(unary, None)


def test_the_kind_describes_batch_recognize(asr):
    _, kind, _ = asr
    assert isinstance(kind, JobKind)
    assert kind.method == METHOD == "speechmesh.asr.v1.AsrService/BatchRecognize"
    assert kind.request_type is asr_pb2.BatchRecognizeRequest
    assert kind.response_type is asr_pb2.BatchRecognizeResponse
    files = request(SHORT, SHORT).files
    assert kind.inputs(request(SHORT, SHORT)) == list(files)
    assert kind.check(request(SHORT, SHORT, enable_word_time_offsets=True)) == 2


async def test_files_are_recognized_as_recognize_does_and_a_bad_one_fails_alone(asr):
    _, kind, servicer = asr
    config = dict(enable_word_time_offsets=True, language_code="en")
    files = (SHORT, LONG, NOT_AUDIO, wav(voice_like(2.0, seed=9)))
    ctx = InlineContext()
    outcome = await kind.run(request(*files, **config), ctx)
    response = outcome.response
    assert isinstance(response, asr_pb2.BatchRecognizeResponse) and not outcome.blobs
    assert [r.source for r in response.results] == [f"content[{i}]" for i in range(4)]
    for index in (0, 1, 3):
        result = response.results[index]
        assert not result.HasField("error")
        assert result.response == await recognize(servicer, files[index], **config)
    assert len(response.results[1].response.segments) >= 1
    failed = response.results[2]
    assert not failed.HasField("response")
    assert failed.error.code == code_pb2.INVALID_ARGUMENT
    assert failed.error.message.startswith("files[2]: ")
    (detail,) = failed.error.details
    violation = error_details_pb2.BadRequest()
    assert detail.Unpack(violation) and violation.field_violations[0].field == "files[2]"
    durations = [response.results[i].response.audio_duration for i in (0, 1, 3)]
    total = sum(results.seconds(d) for d in durations)
    assert results.seconds(response.total_audio_duration) == pytest.approx(total, abs=0.002)


async def test_progress_grows_window_by_window_to_100(asr):
    _, kind, _ = asr
    ctx = InlineContext()
    await kind.run(request(SHORT, LONG, NOT_AUDIO), ctx)
    progress = ctx.progress
    assert_progress_grows_to_done(progress, 3)
    # Progress moved on as the long file's windows finished, not only when files were done:
    # some steps raised the percentage while the count of files done stayed the same.
    steps = [(s.processed_items, round(s.percent, 3)) for s in progress.history]
    inside = {(done, pct) for done, pct in steps if 100 * done / 3 < pct < 100 * (done + 1) / 3}
    assert len(inside) >= 2, steps
    assert progress.processed_audio_s == pytest.approx(83.0, abs=0.01)
    assert progress.total_audio_s == pytest.approx(83.0, abs=0.01)


async def test_every_decode_is_submitted_at_background_priority(asr, monkeypatch):
    models, kind, _ = asr
    spy = PrioritySpy(models.default.batcher, monkeypatch)
    await kind.run(request(LONG, SHORT), InlineContext())
    assert len(spy.priorities) == 4  # three windows and one
    assert set(spy.priorities) == {PRIORITY_BACKGROUND}
    assert spy.most_in_flight <= background_slots(models.default.batcher)


async def test_an_input_gone_since_creation_fails_that_file_only(asr):
    _, kind, _ = asr
    job = request(SHORT)
    job.files.add(upload="uploads/gone")
    job.files.add(content=SHORT)
    ctx = InlineContext()
    response = (await kind.run(job, ctx)).response
    assert [r.source for r in response.results] == ["content[0]", "uploads/gone", "content[1]"]
    assert response.results[1].error.code == code_pb2.FAILED_PRECONDITION
    assert "upload it again" in response.results[1].error.message
    assert response.results[0].HasField("response") and response.results[2].HasField("response")
    assert ctx.reads == ["content", "upload", "content"]


async def test_raw_audio_is_read_with_the_configs_format(asr):
    _, kind, servicer = asr
    pcm = (voice_like(2.0) * 32767).astype("<i2").tobytes()
    fmt = audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000)
    response = (await kind.run(request(pcm, audio_format=fmt), InlineContext())).response
    (result,) = response.results
    assert result.response == await recognize(servicer, pcm, audio_format=fmt)
    assert results.seconds(result.response.audio_duration) == pytest.approx(2.0)


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (request(), "files"),
        (request(*[SHORT] * 101), "files"),
        (request(b""), "files[0].content"),
        (request(beam_size=9), "config.beam_size"),
        (request(SHORT, temperature=1.5), "config.temperature"),
        (request(SHORT, language_code="xx-nowhere"), "config.language_code"),
        (request(SHORT, hotwords=["x" * 51]), "config.hotwords"),
        (
            request(
                SHORT,
                audio_format=audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_LINEAR16),
            ),
            "config.audio_format.sample_rate_hertz",
        ),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(asr, job, field):
    _, kind, _ = asr
    with pytest.raises(errors.ApiError) as error:
        kind.check(job)
    assert field_of(error) == field


def test_a_file_without_a_source_and_a_long_request_id_are_named(asr):
    _, kind, _ = asr
    job = request(SHORT, SHORT)
    job.files.add()
    with pytest.raises(errors.ApiError) as error:
        kind.check(job)
    assert field_of(error) == "files[2]" and "content, upload or uri" in error.value.message
    job = request(SHORT)
    job.request_id = "r" * 129
    with pytest.raises(errors.ApiError) as error:
        kind.check(job)
    assert field_of(error) == "request_id"


def test_an_unknown_model_is_not_found(asr):
    _, kind, _ = asr
    with pytest.raises(errors.ApiError) as error:
        kind.check(request(SHORT, model="no-such-model"))
    assert error.value.code == grpc.StatusCode.NOT_FOUND


# -- results -----------------------------------------------------------------------------------


def _segment(text: str, start: float, end: float) -> asr_pb2.SpeechSegment:
    segment = asr_pb2.SpeechSegment(text=text)
    segment.start_offset.FromMilliseconds(round(start * 1000))
    segment.end_offset.FromMilliseconds(round(end * 1000))
    return segment


#: A result of two files, the second failed: renderings with known segments.
RESULT = asr_pb2.BatchRecognizeResponse(
    results=[
        asr_pb2.BatchRecognizeFileResult(
            source="content[0]",
            response=asr_pb2.RecognizeResponse(
                transcript="Go forward. Ten meters, then stop and wait for me there please.",
                segments=[
                    _segment("Go forward.", 0.5, 1.25),
                    _segment(" ", 1.3, 1.4),
                    _segment("Ten meters, then stop and wait for me there please.", 3661.0, 3662.5),
                ],
            ),
        ),
        asr_pb2.BatchRecognizeFileResult(
            source="uploads/u1",
            error=errors.invalid_argument("files[1]", "could not decode").to_proto(),
        ),
    ]
)


async def test_json_is_the_whole_response_and_the_default(asr):
    _, kind, _ = asr
    load = blob_loader({})
    for fmt in (ops_pb2.RESULT_FORMAT_JSON, ops_pb2.RESULT_FORMAT_UNSPECIFIED):
        content_type, body = await kind.render(RESULT, fmt, 7, load)  # index ignored
        assert content_type == "application/json"
        value = json.loads(body)
        assert value["results"][1]["source"] == "uploads/u1"  # proto field names
        assert json_format.Parse(body, asr_pb2.BatchRecognizeResponse()) == RESULT


async def test_text_and_subtitles_of_one_file(asr):
    _, kind, _ = asr
    load = blob_loader({})
    content_type, body = await kind.render(RESULT, ops_pb2.RESULT_FORMAT_TEXT, 0, load)
    assert content_type == "text/plain; charset=utf-8"
    assert body.decode() == RESULT.results[0].response.transcript + "\n"
    content_type, body = await kind.render(RESULT, ops_pb2.RESULT_FORMAT_SRT, 0, load)
    assert content_type.startswith("application/x-subrip")
    long_text = "Ten meters, then stop and wait for me\nthere please."  # wrapped at 42
    expected = [(0.5, 1.25, "Go forward."), (3661.0, 3662.5, long_text)]
    assert srt_cues(body.decode()) == expected  # the blank segment has no cue
    content_type, body = await kind.render(RESULT, ops_pb2.RESULT_FORMAT_VTT, 0, load)
    assert content_type.startswith("text/vtt")
    assert vtt_cues(body.decode()) == expected


async def test_subtitles_of_a_real_run_have_its_segments_times(asr):
    _, kind, _ = asr
    response = (await kind.run(request(LONG), InlineContext())).response
    segments = [s for s in response.results[0].response.segments if s.text.strip()]
    _, body = await kind.render(response, ops_pb2.RESULT_FORMAT_VTT, 0, blob_loader({}))
    cues = vtt_cues(body.decode())
    assert len(cues) == len(segments)
    for (start, end, _), segment in zip(cues, segments, strict=True):
        assert start == pytest.approx(results.seconds(segment.start_offset), abs=0.001)
        if segment.end_offset.ToMilliseconds() > segment.start_offset.ToMilliseconds():
            assert end == pytest.approx(results.seconds(segment.end_offset), abs=0.001)


@pytest.mark.parametrize(
    ("fmt", "index", "field", "mention"),
    [
        (ops_pb2.RESULT_FORMAT_AUDIO, 0, "format", "RESULT_FORMAT_AUDIO"),
        (42, 0, "format", "42"),
        (ops_pb2.RESULT_FORMAT_TEXT, 2, "file_index", "is 2; the job has 2 file(s)"),
        (ops_pb2.RESULT_FORMAT_SRT, -1, "file_index", "is -1"),
        (ops_pb2.RESULT_FORMAT_VTT, 1, "file_index", "uploads/u1) failed"),
    ],
)
async def test_results_the_job_does_not_have_are_invalid_argument(asr, fmt, index, field, mention):
    _, kind, _ = asr
    with pytest.raises(errors.ApiError) as error:
        await kind.render(RESULT, fmt, index, blob_loader({}))
    assert field_of(error) == field and mention in error.value.message
