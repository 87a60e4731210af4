"""Results of long-running jobs (google.longrunning operations): the job with its state and
progress, each file's result, a failed job's error, and the uploads jobs read.

Import them from speechmesh.client (or speechmesh.client.types).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from google.longrunning import operations_pb2 as lro
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from speechmesh.asr.v1 import asr_pb2
from speechmesh.client._common import seconds
from speechmesh.client.errors import SpeechmeshError, from_status, status_code
from speechmesh.client.transcripts import Transcript
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.tts.v1 import tts_pb2

__all__ = ["JOB_SERVICES", "JOB_STATES", "Job", "JobError", "JobFileResult", "Upload"]

#: The services that run jobs, by the short name in operation names.
JOB_SERVICES = ("asr", "translate", "tts")
#: A job's states, as `Job.state` names them; the last three are final (`done`).
JOB_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
#: The response message of each service's jobs (`Operation.response`).
RESPONSE_TYPES: dict[str, type[Message]] = {
    "asr": asr_pb2.BatchRecognizeResponse,
    "translate": tr.BatchTranslateSpeechResponse,
    "tts": tts_pb2.BatchSynthesizeResponse,
}


def job_service(name: str) -> str:
    """The service of a job by its name: "operations/asr/ID" -> "asr"."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "operations" or parts[1] not in JOB_SERVICES or not parts[2]:
        raise ValueError(
            f"{name!r} is not a job name: jobs are named operations/SERVICE/ID with SERVICE one"
            f" of {', '.join(JOB_SERVICES)} (as `submit` and `list` show them)"
        )
    return parts[1]


def _service_of(name: str) -> str:
    try:
        return job_service(name)
    except ValueError:
        return ""


def job_state(state: str) -> str:
    """A state as the service's filter names it: "running", "RUNNING" or
    "OPERATION_STATE_RUNNING" -> "RUNNING"."""
    name = state.strip().upper().removeprefix("OPERATION_STATE_")
    if name not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r}; use one of {', '.join(JOB_STATES)}")
    return name


def _time(message: Message, field: str) -> datetime.datetime | None:
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=datetime.UTC)


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclasses.dataclass
class JobError:
    """Why a job (or one file of a batch) failed: the gRPC code's name and the message."""

    code: str
    message: str
    proto: status_pb2.Status | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, status: status_pb2.Status) -> JobError:
        return cls(status_code(status.code).name, status.message, status)

    def exception(self) -> SpeechmeshError:
        """The error as the client raises it: the SpeechmeshError subclass of its code, with
        the details the service attached (field violations, retry delay, ...)."""
        return from_status(self.proto or status_pb2.Status(code=2, message=self.message))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclasses.dataclass
class JobFileResult:
    """One file of a batch job: where it came from, and its result (a Transcript for
    recognition, a SpeechTranslation for translation) or its error."""

    source: str
    result: Transcript | Any | None
    error: JobError | None
    #: Translation into speech: size of the file's translated audio (fetch it with
    #: `job_result(name, "audio", file_index=i)`).
    audio_size_bytes: int = 0
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass
class Job:
    """A long-running job (a google.longrunning.Operation): where it is, how far it has come,
    and, once done, its result or error.

    `state` is one of JOB_STATES; `done` is True in the final three. `response` is the typed
    response message once SUCCEEDED; `results` the result of each file of a batch.
    """

    name: str
    service: str
    state: str
    done: bool
    progress_percent: float
    processed_audio_seconds: float
    #: None until the service knows it (after reading the files; never for synthesis).
    total_audio_seconds: float | None
    processed_items: int
    total_items: int
    attempt: int
    create_time: datetime.datetime | None
    start_time: datetime.datetime | None
    end_time: datetime.datetime | None
    update_time: datetime.datetime | None = None
    expire_time: datetime.datetime | None = None
    cancel_requested: bool = False
    #: The method that created it, e.g. "speechmesh.asr.v1.AsrService/BatchRecognize".
    method: str = ""
    request_id: str = ""
    #: Why it FAILED (or CANCELLED); None otherwise.
    error: JobError | None = None
    proto: lro.Operation | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, operation: lro.Operation) -> Job:
        meta = ops_pb2.OperationMetadata()
        if operation.HasField("metadata") and operation.metadata.Is(meta.DESCRIPTOR):
            operation.metadata.Unpack(meta)
        state = ops_pb2.OperationState.Name(meta.state).removeprefix("OPERATION_STATE_")
        error = JobError.from_proto(operation.error) if operation.HasField("error") else None
        if meta.state == ops_pb2.OPERATION_STATE_UNSPECIFIED and operation.done:
            state = "SUCCEEDED" if error is None else "FAILED"
        return cls(
            name=operation.name,
            service=_service_of(operation.name),
            state=state,
            done=operation.done,
            progress_percent=round(meta.progress_percent, 2),
            processed_audio_seconds=seconds(meta.processed_audio),
            total_audio_seconds=(
                seconds(meta.total_audio) if meta.HasField("total_audio") else None
            ),
            processed_items=meta.processed_items,
            total_items=meta.total_items,
            attempt=meta.attempt,
            create_time=_time(meta, "create_time"),
            start_time=_time(meta, "start_time"),
            end_time=_time(meta, "end_time"),
            update_time=_time(meta, "update_time"),
            expire_time=_time(meta, "expire_time"),
            cancel_requested=meta.cancel_requested,
            method=meta.method,
            request_id=meta.request_id,
            error=error,
            proto=operation,
        )

    @property
    def id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    @property
    def response(self) -> Message | None:
        """The job's response once SUCCEEDED: asr_pb2.BatchRecognizeResponse,
        translate_pb2.BatchTranslateSpeechResponse or tts_pb2.BatchSynthesizeResponse."""
        if self.proto is None or not self.proto.HasField("response"):
            return None
        kind = RESPONSE_TYPES.get(self.service)
        if kind is None or not self.proto.response.Is(kind.DESCRIPTOR):
            return None
        found = kind()
        self.proto.response.Unpack(found)
        return found

    @property
    def results(self) -> list[JobFileResult]:
        """Each file's result, in the order of the request (recognition and translation; []
        for synthesis and before the job SUCCEEDED)."""
        from speechmesh.client.types import SpeechTranslation

        response = self.response
        if response is None or self.service == "tts":
            return []
        found = []
        for entry in response.results:
            error = JobError.from_proto(entry.error) if entry.HasField("error") else None
            result: Any = None
            if entry.HasField("response"):
                if self.service == "asr":
                    result = Transcript.from_proto(entry.response)
                else:
                    result = SpeechTranslation.from_proto(entry.response)
            size = getattr(entry, "translated_audio_size_bytes", 0)
            found.append(JobFileResult(entry.source, result, error, size, entry))
        return found

    def raise_for_error(self) -> None:
        """Raises the job's error (a SpeechmeshError subclass by its code) if it has one."""
        if self.error is not None:
            raise self.error.exception()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "service": self.service,
            "state": self.state,
            "done": self.done,
            "progress_percent": self.progress_percent,
            "processed_audio_seconds": self.processed_audio_seconds,
            "total_audio_seconds": self.total_audio_seconds,
            "processed_items": self.processed_items,
            "total_items": self.total_items,
            "attempt": self.attempt,
            "create_time": _iso(self.create_time),
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "expire_time": _iso(self.expire_time),
            "cancel_requested": self.cancel_requested,
            "method": self.method,
            "request_id": self.request_id,
            "error": (
                {"code": self.error.code, "message": self.error.message} if self.error else None
            ),
        }


@dataclasses.dataclass
class Upload:
    """A file uploaded for jobs to read ("uploads/{id}"): pass it (or its `name`) among the
    files of a batch job before `expire_time`."""

    name: str
    size_bytes: int
    content_type: str
    sha256: str
    create_time: datetime.datetime | None
    expire_time: datetime.datetime | None
    proto: Message | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, upload: ops_pb2.Upload) -> Upload:
        return cls(
            upload.name,
            upload.size_bytes,
            upload.content_type,
            upload.sha256,
            _time(upload, "create_time"),
            _time(upload, "expire_time"),
            upload,
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "create_time": _iso(self.create_time),
            "expire_time": _iso(self.expire_time),
        }
