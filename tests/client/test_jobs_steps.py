"""`client.jobs` without a server: both transports drive scripted stub methods. Uploads go in
pieces (a file is never read whole), batch inputs are inline, uploaded or passed by name,
waiting long-polls until done or the overall timeout, listing reads every page with the state
filter, results come as raw bytes, and a job's error becomes the client's typed error."""

from __future__ import annotations

import asyncio
import datetime

import grpc
import pytest
from google.api import httpbody_pb2
from google.longrunning import operations_pb2 as lro
from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from speechmesh.asr.v1 import asr_pb2
from speechmesh.client import (
    AsyncClient,
    AudioFileError,
    Client,
    FailedPrecondition,
    InvalidArgument,
    Job,
    NotFound,
    Transcript,
    Upload,
)
from speechmesh.client._common import duration
from speechmesh.client._job_steps import list_filter, read_chunks, result_format
from speechmesh.client.jobs import job_service, job_state
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.tts.v1 import tts_pb2
from tests.client.test_operations import FakeRpcError, packed, recognize_reply

TARGET = "127.0.0.1:1"  # never called: every call goes to a scripted stub method
NAME = "operations/asr/job-1"


def operation(
    state: int,
    *,
    name: str = NAME,
    percent: float = 0.0,
    response=None,
    error: status_pb2.Status | None = None,
    **meta,
) -> lro.Operation:
    found = lro.Operation(name=name, done=state >= ops_pb2.OPERATION_STATE_SUCCEEDED)
    found.metadata.Pack(ops_pb2.OperationMetadata(state=state, progress_percent=percent, **meta))
    if response is not None:
        found.response.Pack(response)
    if error is not None:
        found.error.CopyFrom(error)
    return found


class Done:
    """A finished grpc.Future."""

    def __init__(self, reply):
        self.reply = reply
        self.cancelled = False

    def result(self):
        return self.reply

    def cancel(self):
        self.cancelled = True


def uploaded(messages: list[httpbody_pb2.HttpBody]) -> ops_pb2.Upload:
    data = b"".join(m.data for m in messages)
    return ops_pb2.Upload(
        name=f"uploads/u{len(data)}", size_bytes=len(data), content_type=messages[0].content_type
    )


class Scripted:
    """Stub methods answering from `script` (method name -> function of the request); every
    call is kept in `calls` as (method, request, timeout). UploadAudio keeps its messages."""

    def __init__(self, script: dict, aio: bool = False):
        self.script = script
        self.aio = aio
        self.calls: list[tuple[str, object, object]] = []
        self.uploads: list[list[httpbody_pb2.HttpBody]] = []

    def answer(self, name, request, timeout):
        self.calls.append((name, request, timeout))
        return self.script[name](request)

    def __getattr__(self, name):
        if name == "UploadAudio":
            return self._upload_aio if self.aio else self._Upload(self)
        if self.aio:

            async def method(request, timeout=None, metadata=()):
                await asyncio.sleep(0)
                return self.answer(name, request, timeout)

            return method
        return lambda request, timeout=None, metadata=(): self.answer(name, request, timeout)

    class _Upload:
        def __init__(self, outer):
            self.outer = outer

        def future(self, requests, timeout=None, metadata=()):
            messages = list(requests)
            self.outer.uploads.append(messages)
            return Done(uploaded(messages))

    async def _upload_aio(self, requests, timeout=None, metadata=()):
        messages = [message async for message in requests]
        self.uploads.append(messages)
        return uploaded(messages)


# -- names, states, formats --------------------------------------------------------------------


def test_a_jobs_service_is_read_from_its_name():
    assert job_service("operations/translate/abc") == "translate"
    for wrong in ("abc", "operations/asr", "operations/ocr/x", "operations/asr/", "ops/asr/x"):
        with pytest.raises(ValueError, match="not a job name"):
            job_service(wrong)
    with Client(TARGET) as client, pytest.raises(ValueError, match="operations/SERVICE/ID"):
        client.jobs.get_job("job-1")


def test_states_filters_and_result_formats_by_their_short_names():
    assert job_state("running") == job_state("OPERATION_STATE_RUNNING") == "RUNNING"
    with pytest.raises(ValueError, match="QUEUED, RUNNING"):
        job_state("paused")
    assert list_filter("failed", None) == "state = FAILED"
    assert list_filter("queued", False) == "state = QUEUED AND done = false"
    assert list_filter(None, True) == "done = true" and list_filter(None, None) == ""
    assert result_format(None) == ops_pb2.RESULT_FORMAT_UNSPECIFIED
    assert result_format("SRT") == ops_pb2.RESULT_FORMAT_SRT
    with pytest.raises(ValueError, match="json, text, srt, vtt, audio"):
        result_format("docx")


# -- the Job type ------------------------------------------------------------------------------


def test_a_job_carries_its_metadata_and_its_typed_response():
    created = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    running = Job.from_proto(
        operation(
            ops_pb2.OPERATION_STATE_RUNNING,
            percent=42.5,
            processed_audio=duration(25.2),
            total_audio=duration(60.0),
            processed_items=1,
            total_items=2,
            attempt=2,
            create_time=created,
            request_id="r1",
            method="speechmesh.asr.v1.AsrService/BatchRecognize",
        )
    )
    assert (running.service, running.id, running.state, running.done) == (
        "asr",
        "job-1",
        "RUNNING",
        False,
    )
    assert running.progress_percent == 42.5 and running.processed_audio_seconds == 25.2
    assert running.total_audio_seconds == 60.0 and (
        running.processed_items,
        running.total_items,
    ) == (1, 2)
    assert running.attempt == 2 and running.request_id == "r1"
    assert running.create_time == datetime.datetime.fromtimestamp(1_700_000_000, datetime.UTC)
    assert running.start_time is None and running.error is None
    assert running.response is None and running.results == []
    assert running.to_dict()["create_time"].startswith("2023-11-14T22:13:20")
    queued = Job.from_proto(operation(ops_pb2.OPERATION_STATE_QUEUED))
    assert queued.total_audio_seconds is None  # unknown until the files were read

    failed_file = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="not audio")
    response = asr_pb2.BatchRecognizeResponse(
        results=[
            asr_pb2.BatchRecognizeFileResult(
                source="content[0]", response=recognize_reply("hello there", 0.0, 1.5)
            ),
            asr_pb2.BatchRecognizeFileResult(source="uploads/u1", error=failed_file),
        ]
    )
    done = Job.from_proto(operation(ops_pb2.OPERATION_STATE_SUCCEEDED, response=response))
    assert done.succeeded and done.done and done.response == response
    first, second = done.results
    assert isinstance(first.result, Transcript) and first.result.text == "hello there"
    assert first.ok and first.source == "content[0]"
    assert not second.ok and second.result is None
    assert (second.error.code, second.error.message) == ("INVALID_ARGUMENT", "not audio")
    assert isinstance(second.error.exception(), InvalidArgument)
    done.raise_for_error()  # files may fail while the job SUCCEEDED

    speech = tts_pb2.BatchSynthesizeResponse(sample_rate_hertz=24000, audio_size_bytes=10)
    spoken = Job.from_proto(
        operation(ops_pb2.OPERATION_STATE_SUCCEEDED, name="operations/tts/t", response=speech)
    )
    assert spoken.service == "tts" and spoken.response.sample_rate_hertz == 24000
    assert spoken.results == []


def test_a_failed_job_raises_the_clients_typed_error_with_its_details():
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="files[0].uri", description="outside")
        ]
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="path outside the root", details=[packed(bad)]
    )
    job = Job.from_proto(operation(ops_pb2.OPERATION_STATE_FAILED, error=status))
    assert job.state == "FAILED" and job.done and not job.succeeded
    assert str(job.error) == "INVALID_ARGUMENT: path outside the root"
    with pytest.raises(InvalidArgument) as caught:
        job.raise_for_error()
    assert (
        caught.value.fields == ["files[0].uri"] and caught.value.message == "path outside the root"
    )
    assert job.to_dict()["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": "path outside the root",
    }
    cancelled = Job.from_proto(
        operation(
            ops_pb2.OPERATION_STATE_CANCELLED,
            error=status_pb2.Status(code=code_pb2.CANCELLED, message="cancelled"),
        )
    )
    assert cancelled.state == "CANCELLED" and cancelled.error.code == "CANCELLED"


# -- uploads -----------------------------------------------------------------------------------


def test_files_are_read_in_pieces_as_they_are_sent(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(bytes(range(256)) * 10)
    pieces = read_chunks(path, 1000)
    assert len(next(pieces)) == 1000  # one piece read, not the file
    assert [len(p) for p in read_chunks(path, 1000)] == [1000, 1000, 560]
    assert b"".join(read_chunks(memoryview(b"abcdef"), 4)) == b"abcdef"
    with pytest.raises(TypeError, match="not int"):
        next(read_chunks(5, 10))


def test_upload_streams_a_file_in_chunks_with_its_content_type(tmp_path):
    path = tmp_path / "meeting.wav"
    path.write_bytes(b"RIFF" + bytes(9996))
    ops = Scripted({})
    with Client(TARGET) as client:
        client.jobs.operations["asr"] = ops
        found = client.jobs.upload(path, chunk_size=4096)
        assert isinstance(found, Upload) and found.name == "uploads/u10000"
        assert found.size_bytes == 10000
        messages = ops.uploads[0]
        assert [len(m.data) for m in messages] == [4096, 4096, 1808]
        assert messages[0].content_type == "audio/x-wav"
        assert all(not m.content_type for m in messages[1:])
        assert client.jobs.upload(b"raw", content_type="audio/flac").content_type == "audio/flac"
        with pytest.raises(AudioFileError, match="no such file"):
            client.jobs.upload(tmp_path / "missing.wav")
        with pytest.raises(ValueError, match="not 'tts'"):
            client.jobs.upload(b"x", "tts")
        with pytest.raises(ValueError, match="chunk_size"):
            client.jobs.upload(b"x", chunk_size=0)
    assert len(ops.uploads) == 2  # the failed calls sent nothing

    async def run():
        aops = Scripted({}, aio=True)
        async with AsyncClient(TARGET) as client:
            client.jobs.operations["translate"] = aops
            found = await client.jobs.upload(path, "translate", chunk_size=3000)
        return found, aops.uploads[0]

    found, messages = asyncio.run(run())
    assert found.size_bytes == 10000 and len(messages) == 4


def test_a_failing_source_cancels_the_upload_and_raises_its_error():
    class Broken:
        def __init__(self):
            self.reads = 0

        def read(self, size):
            self.reads += 1
            if self.reads > 1:
                raise OSError("disk gone")
            return b"x" * size

    class Upload:
        def future(self, requests, timeout=None, metadata=()):
            self.messages = list(requests)  # the source failed after one piece
            return Done(uploaded(self.messages))

    with Client(TARGET) as client:
        stub = Upload()
        client.jobs.operations["asr"].UploadAudio = stub
        with pytest.raises(OSError, match="disk gone"):
            client.jobs.upload(Broken(), chunk_size=10)
    assert len(stub.messages) == 1


# -- starting jobs -----------------------------------------------------------------------------


def test_batch_recognize_sends_small_files_inline_uploads_big_ones_and_passes_names(tmp_path):
    small = tmp_path / "small.wav"
    small.write_bytes(b"s" * 100)
    big = tmp_path / "big.flac"
    big.write_bytes(b"b" * 5000)
    local = tmp_path / "uploads" / "local.wav"  # a local folder named uploads
    local.parent.mkdir()
    local.write_bytes(b"l" * 10)
    ops = Scripted({})
    starts = []

    def batch(request, timeout=None, metadata=()):
        starts.append((request, timeout))
        return operation(ops_pb2.OPERATION_STATE_QUEUED, total_items=len(request.files))

    with Client(TARGET) as client:
        client.jobs.operations["asr"] = ops
        client.asr.stub.BatchRecognize = batch
        job = client.jobs.batch_recognize(
            [
                small,
                str(big),
                b"inline bytes",
                "uploads/earlier",
                "file:///data/a.wav",
                "https://example.org/b.mp3",
                local,
            ],
            language="en",
            words=True,
            request_id="r1",
            inline_limit=1000,
            timeout=9,
        )
        assert job.state == "QUEUED" and job.total_items == 7
        request, timeout = starts[0]
        assert timeout == 9 and request.request_id == "r1"
        assert request.config.language_code == "en" and request.config.enable_word_time_offsets
        kinds = [
            (f.WhichOneof("source"), getattr(f, f.WhichOneof("source"))) for f in request.files
        ]
        assert kinds == [
            ("content", b"s" * 100),
            ("upload", "uploads/u5000"),
            ("content", b"inline bytes"),
            ("upload", "uploads/earlier"),
            ("uri", "file:///data/a.wav"),
            ("uri", "https://example.org/b.mp3"),
            ("content", b"l" * 10),
        ]
        assert ops.uploads[0][0].content_type == "audio/flac"
        # one file alone; a missing file fails before anything is sent
        client.jobs.batch_recognize(b"x")
        assert len(starts[1][0].files) == 1
        with pytest.raises(AudioFileError, match="no such file"):
            client.jobs.batch_recognize([tmp_path / "missing.wav"])
        with pytest.raises(ValueError, match="at least one file"):
            client.jobs.batch_recognize([])
        with pytest.raises(TypeError, match="not int"):
            client.jobs.batch_recognize([3])
    assert len(starts) == 2 and len(ops.uploads) == 1


def test_batch_translate_and_synthesize_build_their_requests(tmp_path):
    seen = {}

    def start(kind, name):
        def method(request, timeout=None, metadata=()):
            seen[kind] = request
            return operation(ops_pb2.OPERATION_STATE_QUEUED, name=name)

        return method

    async def run():
        async def translate(request, timeout=None, metadata=()):
            return start("translate", "operations/translate/t1")(request)

        async def synthesize(request, timeout=None, metadata=()):
            return start("tts", "operations/tts/s1")(request)

        async with AsyncClient(TARGET) as client:
            client.translate.stub.BatchTranslateSpeech = translate
            client.tts.stub.BatchSynthesize = synthesize
            first = await client.jobs.batch_translate_speech(
                [b"audio"], "fr", speech=True, format="mp3", source="en"
            )
            second = await client.jobs.batch_synthesize(
                "A long chapter.", preset_voice="default", seed=7
            )
            return first, second

    first, second = asyncio.run(run())
    assert (first.service, second.service) == ("translate", "tts")
    config = seen["translate"].config
    assert config.target_language_code == "fr" and config.source_language_code == "en"
    assert len(config.output_modalities) == 2 and config.output_audio_config.encoding
    assert seen["tts"].text == "A long chapter." and seen["tts"].config.preset_voice == "default"
    assert seen["tts"].config.seed == 7
    with Client(TARGET) as client, pytest.raises(ValueError, match="one of voice, preset_voice"):
        client.jobs.batch_synthesize("x", voice="a", preset_voice="b")


# -- following jobs ----------------------------------------------------------------------------


def test_wait_job_long_polls_until_done_and_reports_progress():
    answers = iter(
        [
            operation(ops_pb2.OPERATION_STATE_QUEUED),
            operation(ops_pb2.OPERATION_STATE_RUNNING, percent=50.0),
            operation(ops_pb2.OPERATION_STATE_SUCCEEDED, percent=100.0),
        ]
    )
    ops = Scripted({"WaitOperation": lambda request: next(answers)})
    seen = []
    with Client(TARGET) as client:
        client.jobs.operations["asr"] = ops
        job = client.jobs.wait_job(NAME, on_progress=seen.append, poll_interval=0.5)
    assert job.state == "SUCCEEDED" and job.done
    assert [(j.state, j.progress_percent) for j in seen] == [
        ("QUEUED", 0.0),
        ("RUNNING", 50.0),
        ("SUCCEEDED", 100.0),
    ]
    name, request, timeout = ops.calls[0]
    assert name == "WaitOperation" and request.name == NAME
    assert request.timeout.ToNanoseconds() == 500_000_000 and timeout == pytest.approx(30.5)


def test_wait_job_stops_at_its_timeout_with_the_job_not_done():
    ops = Scripted({"WaitOperation": lambda r: operation(ops_pb2.OPERATION_STATE_RUNNING)})
    ops.script["GetOperation"] = ops.script["WaitOperation"]

    async def run():
        async with AsyncClient(TARGET) as client:
            client.jobs.operations["asr"] = Scripted(ops.script, aio=True)
            started = asyncio.get_running_loop().time()
            job = await client.jobs.wait_job(NAME, timeout=0.3, poll_interval=0.1)
            return job, asyncio.get_running_loop().time() - started

    job, took = asyncio.run(run())
    assert not job.done and job.state == "RUNNING"
    assert 0.25 <= took < 2.0  # the service answered at once: the client paced its polls
    with Client(TARGET) as client:
        client.jobs.operations["asr"] = ops
        assert not client.jobs.wait_job(NAME, timeout=0).done
    assert ops.calls[-1][0] == "GetOperation"  # no time to wait: where it is now


def test_list_jobs_reads_every_page_with_the_state_filter():
    pages = {
        "": lro.ListOperationsResponse(
            operations=[operation(ops_pb2.OPERATION_STATE_RUNNING, name="operations/tts/a")],
            next_page_token="p2",
        ),
        "p2": lro.ListOperationsResponse(
            operations=[operation(ops_pb2.OPERATION_STATE_RUNNING, name="operations/tts/b")]
        ),
    }
    ops = Scripted({"ListOperations": lambda request: pages[request.page_token]})
    with Client(TARGET) as client:
        client.jobs.operations["tts"] = ops
        jobs = client.jobs.list_jobs("tts", state="running", page_size=1)
        with pytest.raises(ValueError, match="unknown service"):
            client.jobs.list_jobs("ocr")
    assert [j.name for j in jobs] == ["operations/tts/a", "operations/tts/b"]
    requests = [request for _, request, _ in ops.calls]
    assert [r.page_token for r in requests] == ["", "p2"]
    assert all(
        (r.name, r.filter, r.page_size) == ("operations/tts", "state = RUNNING", 1)
        for r in requests
    )


def test_cancel_delete_and_results_and_the_errors_they_raise():
    def result(request):
        if request.file_index == 9:
            raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "no file 9: the batch has 2")
        if request.name.endswith("running"):
            raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "still RUNNING")
        body = f"{request.format}:{request.file_index}".encode()
        return httpbody_pb2.HttpBody(content_type="text/plain", data=body)

    def missing(request):
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no operation {request.name}")

    script = {
        "GetOperationResult": result,
        "CancelOperation": lambda request: None,
        "DeleteOperation": missing,
    }
    ops = Scripted(script)
    with Client(TARGET) as client:
        client.jobs.operations["asr"] = ops
        assert client.jobs.job_result(NAME, "srt", file_index=1) == b"3:1"
        assert client.jobs.job_result(NAME) == b"0:0"
        with pytest.raises(InvalidArgument, match="no file 9"):
            client.jobs.job_result(NAME, "text", file_index=9)
        with pytest.raises(FailedPrecondition):
            client.jobs.job_result("operations/asr/running", "text")
        assert client.jobs.cancel_job(NAME) is None
        with pytest.raises(NotFound, match="no operation"):
            client.jobs.delete_job(NAME)
    assert [name for name, _, _ in ops.calls][-2:] == ["CancelOperation", "DeleteOperation"]

    async def run():
        async with AsyncClient(TARGET) as client:
            client.jobs.operations["asr"] = Scripted(script, aio=True)
            return await client.jobs.job_result(NAME, "vtt")

    assert asyncio.run(run()) == b"4:0"


def test_every_jobs_method_exists_in_both_transports_with_one_signature():
    import inspect

    from speechmesh.client.aio import AsyncJobsClient
    from speechmesh.client.sync import JobsClient

    methods = [
        "upload",
        "batch_recognize",
        "batch_translate_speech",
        "batch_synthesize",
        "get_job",
        "list_jobs",
        "wait_job",
        "cancel_job",
        "delete_job",
        "job_result",
    ]
    for name in methods:
        sync, aio = getattr(JobsClient, name), getattr(AsyncJobsClient, name)
        assert inspect.signature(sync) == inspect.signature(aio)
        assert inspect.iscoroutinefunction(aio) and not inspect.iscoroutinefunction(sync)
