"""The methods of `client.jobs`, written once for the blocking and the asyncio client (see
_operations.py): long-running jobs of every service (google.longrunning operations) and the
uploads they read. A job's service is read from its name, "operations/{service}/{id}"."""

from __future__ import annotations

import mimetypes
import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from google.api import httpbody_pb2
from google.longrunning import operations_pb2 as lro

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.client._common import DEFAULT, RequestGuard, duration
from speechmesh.client._operations import Blocking, ClientStream, Steps, Unary, operation
from speechmesh.client._requests import (
    recognition_config,
    speech_translation_config,
    synthesis_config,
)
from speechmesh.client.audio import AudioFileError, read_bytes
from speechmesh.client.jobs import JOB_SERVICES, Job, Upload, job_service, job_state
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.translate.v1 import translate_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

#: Services that take uploads (those whose jobs read recordings).
UPLOAD_SERVICES = ("asr", "translate")
#: Upload message size: the pieces a file is streamed in.
UPLOAD_CHUNK_BYTES = 1 << 20
#: A file bigger than this goes to the service as an upload first, not inside the request.
INLINE_LIMIT_BYTES = 4 << 20
#: Inline files of one request together stay under this (the gateway takes 32 MiB requests).
INLINE_TOTAL_BYTES = 16 << 20
#: How long one WaitOperation call waits (the progress of `wait_job` comes this often).
POLL_SECONDS = 2.0
#: A WaitOperation call's deadline is its wait plus this.
WAIT_MARGIN_SECONDS = 30.0
#: Result forms by their short names (GetOperationResult's `format`).
RESULT_FORMATS = {
    "json": ops_pb2.RESULT_FORMAT_JSON,
    "text": ops_pb2.RESULT_FORMAT_TEXT,
    "srt": ops_pb2.RESULT_FORMAT_SRT,
    "vtt": ops_pb2.RESULT_FORMAT_VTT,
    "audio": ops_pb2.RESULT_FORMAT_AUDIO,
}
#: Strings that name a recording on the service's side rather than a local file.
URI_PREFIXES = ("file://", "https://", "http://")

JobProgress = Callable[[Job], None]


def result_format(format: str | None) -> int:
    """GetOperationResult's ResultFormat for "json", "text", "srt", "vtt", "audio"; None: the
    result's natural form."""
    if not format:
        return ops_pb2.RESULT_FORMAT_UNSPECIFIED
    found = RESULT_FORMATS.get(format.lower())
    if found is None:
        raise ValueError(
            f"unknown result format {format!r}; use one of {', '.join(RESULT_FORMATS)}"
        )
    return found


def list_filter(state: str | None, done: bool | None) -> str:
    """ListOperations' filter: `state = RUNNING AND done = false`."""
    clauses = []
    if state:
        clauses.append(f"state = {job_state(state)}")
    if done is not None:
        clauses.append(f"done = {'true' if done else 'false'}")
    return " AND ".join(clauses)


def content_type(source: Any) -> str:
    """The MIME type of a file by its name (informative only); octet-stream for bytes."""
    if isinstance(source, (str, os.PathLike)):
        guessed, _ = mimetypes.guess_type(str(source))
        if guessed:
            return guessed
    return "application/octet-stream"


def file_size(path: str | os.PathLike) -> int:
    """The size of a local file; AudioFileError (naming it) when it cannot be read."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except OSError as error:
        raise AudioFileError(f"{path}: {error.strerror or error}") from error


def read_chunks(source: Any, chunk_size: int) -> Iterator[bytes]:
    """`source` (bytes, a path or a binary file) in pieces of `chunk_size` bytes, read as they
    are sent: a file is never held in memory whole."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
        return
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            yield from iter(lambda: file.read(chunk_size), b"")
        return
    if hasattr(source, "read"):
        stream: IO[bytes] = source
        yield from iter(lambda: stream.read(chunk_size), b"")
        return
    raise TypeError(f"upload bytes, a path or a binary file, not {type(source).__name__}")


def upload_messages(source: Any, kind: str, chunk_size: int) -> Iterator[httpbody_pb2.HttpBody]:
    """The messages of an upload: the pieces of `source`, the first with its content type."""
    first = True
    for chunk in read_chunks(source, chunk_size):
        yield httpbody_pb2.HttpBody(content_type=kind if first else "", data=chunk)
        first = False


def _check_upload_service(service: str) -> None:
    if service not in UPLOAD_SERVICES:
        raise ValueError(
            f"uploads go to {' or '.join(UPLOAD_SERVICES)} (the services whose jobs read"
            f" recordings), not {service!r}"
        )


def _check_chunk_size(chunk_size: int) -> None:
    if not 0 < chunk_size <= 32 << 20:
        raise ValueError(f"chunk_size must be 1 byte to 32 MiB, not {chunk_size}")


class JobsOperations:
    """Long-running jobs of every service (transcribe, translate or speak what is too long for
    one call) and the uploads they read: `client.jobs`. A job runs on the service at the
    lowest priority; follow it with `wait_job`, fetch its result with `job_result`."""

    def __init__(self, client: Any):
        self._client = client
        channel = client.channel
        #: Each service's OperationsService stub, by its short name.
        self.operations = {
            "asr": asr_pb2_grpc.OperationsServiceStub(channel),
            "translate": translate_pb2_grpc.OperationsServiceStub(channel),
            "tts": tts_pb2_grpc.OperationsServiceStub(channel),
        }

    def _stub(self, service: str) -> Any:
        if service not in JOB_SERVICES:
            raise ValueError(f"unknown service {service!r}; use one of {', '.join(JOB_SERVICES)}")
        return self.operations[service]

    # -- uploads ---------------------------------------------------------------------------

    def _upload_steps(
        self, source: Any, service: str, kind: str | None, chunk_size: int, timeout: Any
    ) -> Steps[Upload]:
        _check_upload_service(service)
        _check_chunk_size(chunk_size)
        if isinstance(source, (str, os.PathLike)):
            yield Blocking(file_size, (source,))  # a missing file fails before the call
        messages = upload_messages(source, kind or content_type(source), chunk_size)
        guard = RequestGuard(None, lambda message: message)
        method = self._stub(service).UploadAudio
        return Upload.from_proto((yield ClientStream(method, guard, messages, timeout)))

    @operation
    def upload(
        self,
        source,
        service: str = "asr",
        *,
        content_type: str | None = None,
        chunk_size: int = UPLOAD_CHUNK_BYTES,
        timeout: float | None = DEFAULT,
    ) -> Upload:
        """Uploads a recording for jobs of `service` ("asr" or "translate") to read: `source`
        is bytes, a path or a binary file, streamed in pieces of `chunk_size` bytes (a file is
        never read into memory whole). Returns the Upload; pass it, or its name
        ("uploads/..."), among the files of a batch job. `timeout`: the whole upload's
        deadline (default: the client's stream_timeout)."""
        return (yield from self._upload_steps(source, service, content_type, chunk_size, timeout))

    def _inputs(
        self, files: Any, service: str, inline_limit: int, chunk_size: int
    ) -> Steps[list[ops_pb2.AudioInput]]:
        """The AudioInput of each file: small ones inline, big ones uploaded first."""
        single = (str, os.PathLike, bytes, bytearray, memoryview, Upload, ops_pb2.AudioInput)
        if isinstance(files, single) or hasattr(files, "read"):
            files = [files]
        files = list(files)
        if not files:
            raise ValueError("give at least one file")
        inputs = []
        inline_total = 0
        for item in files:
            if isinstance(item, ops_pb2.AudioInput):
                inputs.append(item)
                continue
            if isinstance(item, Upload):
                inputs.append(ops_pb2.AudioInput(upload=item.name))
                continue
            if isinstance(item, str) and item.startswith("uploads/"):
                inputs.append(ops_pb2.AudioInput(upload=item))
                continue
            if isinstance(item, str) and item.lower().startswith(URI_PREFIXES):
                inputs.append(ops_pb2.AudioInput(uri=item))
                continue
            if hasattr(item, "read"):  # a binary file: read here, sent like bytes
                item = yield Blocking(read_bytes, (item,))
            if isinstance(item, (str, os.PathLike)):
                size = yield Blocking(file_size, (item,))
            elif isinstance(item, (bytes, bytearray, memoryview)):
                size = len(item)
            else:
                raise TypeError(
                    "a file is a path, bytes, a binary file, an Upload, an upload name"
                    f" (uploads/...) or a file:// or https:// URI, not {type(item).__name__}"
                )
            if size <= inline_limit and inline_total + size <= INLINE_TOTAL_BYTES:
                if isinstance(item, (str, os.PathLike)):
                    data = yield Blocking(read_bytes, (item,))
                else:
                    data = bytes(item)
                inputs.append(ops_pb2.AudioInput(content=data))
                inline_total += size
            else:
                found = yield from self._upload_steps(item, service, None, chunk_size, DEFAULT)
                inputs.append(ops_pb2.AudioInput(upload=found.name))
        return inputs

    # -- starting jobs ---------------------------------------------------------------------

    @operation
    def batch_recognize(
        self,
        files,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        inline_limit: int = INLINE_LIMIT_BYTES,
        chunk_size: int = UPLOAD_CHUNK_BYTES,
        **options,
    ) -> Job:
        """Starts a job that transcribes recordings of any length (1 to 100). `files`: one or
        a list of paths, bytes or binary files (any container; those over `inline_limit`
        bytes are uploaded first, the others sent in the request), Upload objects or upload
        names ("uploads/..."; a local file under a folder named uploads is a pathlib.Path),
        or `file://` / `https://` URIs the service reads itself. Returns the Job at once
        (QUEUED); `wait_job` follows it, `job_result` fetches text, SRT, VTT or JSON.

        Options: those of `client.asr.recognize` (language, model, translate, words, prompt,
        hotwords, beam_size, temperature; encoding, sample_rate, channels for raw samples),
        the same for every file."""
        config = recognition_config(**options)
        inputs = yield from self._inputs(files, "asr", inline_limit, chunk_size)
        request = asr_pb2.BatchRecognizeRequest(config=config, files=inputs, request_id=request_id)
        return Job.from_proto((yield Unary(self._client.asr.stub.BatchRecognize, request, timeout)))

    @operation
    def batch_translate_speech(
        self,
        files,
        to: str,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        inline_limit: int = INLINE_LIMIT_BYTES,
        chunk_size: int = UPLOAD_CHUNK_BYTES,
        **options,
    ) -> Job:
        """Starts a job that translates recordings into `to` (files as for
        `batch_recognize`). Options: those of `client.translate.speech` (source, text,
        speech for translated audio, source_transcript, format, output_sample_rate, voice,
        model; encoding, sample_rate, channels for raw samples). A file's translated speech is
        fetched with `job_result(name, "audio", file_index=i)`."""
        config = speech_translation_config(to=to, **options)
        inputs = yield from self._inputs(files, "translate", inline_limit, chunk_size)
        request = tr.BatchTranslateSpeechRequest(config=config, files=inputs, request_id=request_id)
        method = self._client.translate.stub.BatchTranslateSpeech
        return Job.from_proto((yield Unary(method, request, timeout)))

    @operation
    def batch_synthesize(
        self,
        text: str,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> Job:
        """Starts a job that speaks a long text (up to 1,000,000 characters: an audiobook
        chapter). Options: those of `client.tts.synthesize` (voice, preset_voice,
        reference_audio with reference_transcript, language, model, format, sample_rate,
        speed, temperature, seed). The audio is fetched with `job_result(name)`."""
        if options.get("reference_audio") is not None:
            options["reference_audio"] = yield Blocking(read_bytes, (options["reference_audio"],))
        request = tts_pb2.BatchSynthesizeRequest(
            text=text, config=synthesis_config(**options), request_id=request_id
        )
        method = self._client.tts.stub.BatchSynthesize
        return Job.from_proto((yield Unary(method, request, timeout)))

    # -- following jobs --------------------------------------------------------------------

    @operation
    def get_job(self, name: str, timeout: float | None = DEFAULT) -> Job:
        """A job by its name ("operations/asr/..."): its state, progress and, once done, its
        response or error."""
        request = lro.GetOperationRequest(name=name)
        reply = yield Unary(self._stub(job_service(name)).GetOperation, request, timeout)
        return Job.from_proto(reply)

    @operation
    def list_jobs(
        self,
        service: str,
        *,
        state: str | None = None,
        done: bool | None = None,
        page_size: int | None = None,
        timeout: float | None = DEFAULT,
    ) -> list[Job]:
        """The caller's jobs of `service` ("asr", "translate", "tts"), newest first (every
        page, `page_size` at a time); only those in `state` ("queued", "running",
        "succeeded", "failed", "cancelled") or, with `done`, finished or not."""
        stub = self._stub(service)
        query = list_filter(state, done)
        jobs: list[Job] = []
        token = ""
        while True:
            request = lro.ListOperationsRequest(
                name=f"operations/{service}",
                filter=query,
                page_size=page_size or 0,
                page_token=token,
            )
            reply = yield Unary(stub.ListOperations, request, timeout)
            jobs += [Job.from_proto(found) for found in reply.operations]
            token = reply.next_page_token
            if not token:
                return jobs

    @operation
    def wait_job(
        self,
        name: str,
        timeout: float | None = None,
        *,
        on_progress: JobProgress | None = None,
        poll_interval: float = POLL_SECONDS,
    ) -> Job:
        """Waits until the job is done, or `timeout` seconds (None: no limit) have passed,
        and returns it: check `job.done`, then `job.state` ("SUCCEEDED", "FAILED" with
        `job.error`, "CANCELLED"). Long-polls WaitOperation `poll_interval` seconds at a time;
        `on_progress(job)` is called with each answer (state, progress, audio processed)."""
        stub = self._stub(job_service(name))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            wait = poll_interval if remaining is None else min(poll_interval, remaining)
            started = time.monotonic()
            if wait < 0.001:  # no time left to wait: where it is now
                request = lro.GetOperationRequest(name=name)
                reply = yield Unary(stub.GetOperation, request, WAIT_MARGIN_SECONDS)
            else:
                request = lro.WaitOperationRequest(name=name, timeout=duration(wait))
                reply = yield Unary(stub.WaitOperation, request, wait + WAIT_MARGIN_SECONDS)
            job = Job.from_proto(reply)
            if on_progress is not None:
                on_progress(job)
            if job.done or (deadline is not None and time.monotonic() >= deadline):
                return job
            if time.monotonic() - started < 0.05:  # a service that answered at once
                yield Blocking(time.sleep, (min(0.2, poll_interval),))

    @operation
    def cancel_job(self, name: str, timeout: float | None = DEFAULT) -> None:
        """Cancels a job: a queued one ends CANCELLED at once, a running one within about a
        second. Cancelling a finished job changes nothing."""
        request = lro.CancelOperationRequest(name=name)
        yield Unary(self._stub(job_service(name)).CancelOperation, request, timeout)

    @operation
    def delete_job(self, name: str, timeout: float | None = DEFAULT) -> None:
        """Deletes a job with its results and the uploads it read (a running job is cancelled
        first)."""
        request = lro.DeleteOperationRequest(name=name)
        yield Unary(self._stub(job_service(name)).DeleteOperation, request, timeout)

    @operation
    def job_result(
        self,
        name: str,
        format: str | None = None,
        *,
        file_index: int = 0,
        timeout: float | None = DEFAULT,
    ) -> bytes:
        """The result of a SUCCEEDED job as raw bytes: "json" (the whole response), "text",
        "srt" or "vtt" (one file's transcript or translation), "audio" (synthesized or
        translated speech); None: its natural form (audio for speech, else JSON).
        `file_index`: which file of a batch, from 0. A job that failed raises its error."""
        request = ops_pb2.GetOperationResultRequest(
            name=name, format=result_format(format), file_index=file_index
        )
        reply = yield Unary(self._stub(job_service(name)).GetOperationResult, request, timeout)
        return reply.data
