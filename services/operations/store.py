"""The durable job store: operations, their results and uploads, in SQLite or PostgreSQL.

One store may be shared by every replica of a service (PostgreSQL, or SQLite on one machine),
and by several services (rows carry the service's short name). Every method is blocking and
thread-safe; async callers run them with asyncio.to_thread.

Exactly once: a worker claims an operation with a lease (owner + fresh token + expiry), renews
it while working, and writes the result with `finish`, which only succeeds while the token is
still the operation's current one and the operation is not done; a worker that lost its lease
(it stalled, died, or another worker took over after expiry) writes nothing. Each successful
`finish` is recorded as one "finished" row in the events table, so a test (or an operator) can
count how many times an operation produced a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Operation states as stored (the names of speechmesh.common.v1.OperationState without prefix).
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
)
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
DONE_STATES = (SUCCEEDED, FAILED, CANCELLED)


class QueueFullError(Exception):
    """The service already has `limit` operations that are not done."""

    def __init__(self, queued: int, limit: int):
        super().__init__(f"{queued} jobs are queued or running (the limit is {limit})")
        self.queued = queued
        self.limit = limit


@dataclass
class OperationRecord:
    """One operation row. Times are POSIX seconds (float); None when not set."""

    id: str  # random, url-safe, unique across services
    service: str  # "asr", "translate", "tts"
    owner: str  # the identity that created it ("" when the gateway has no auth)
    method: str  # "speechmesh.asr.v1.AsrService/BatchRecognize"
    request: bytes  # the serialized request message
    request_id: str
    state: str  # one of STATES
    create_time: float
    update_time: float
    start_time: float | None = None
    end_time: float | None = None
    attempt: int = 0
    cancel_requested: bool = False
    progress_percent: float = 0.0
    processed_audio_s: float = 0.0
    total_audio_s: float | None = None
    processed_items: int = 0
    total_items: int = 0
    response: bytes | None = None  # the serialized response message, once SUCCEEDED
    error: bytes | None = None  # a serialized google.rpc.Status, once FAILED or CANCELLED
    uploads: list[str] = field(default_factory=list)  # ids of the uploads it reads
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_expires: float | None = None

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES


@dataclass
class UploadRecord:
    id: str
    service: str
    owner: str
    content_type: str
    size_bytes: int
    sha256: str
    create_time: float
    expire_time: float
    state: str  # "WRITING" (chunks still coming), "READY", "EXPIRED" (data deleted)


@dataclass
class Claim:
    """An operation a worker now holds; `token` must be passed to heartbeat and finish."""

    operation: OperationRecord
    token: str


class LeaseLostError(Exception):
    """The worker no longer holds the operation (its lease expired and another took it, or the
    operation was deleted): it must stop and write nothing."""


@dataclass
class Progress:
    """How far a job has come (jobs update it in place; heartbeats write it)."""

    percent: float = 0.0
    processed_audio_s: float = 0.0
    total_audio_s: float | None = None
    processed_items: int = 0
    total_items: int = 0


class JobStore:
    """See the module docstring. Open with `JobStore.open(url)`."""

    @classmethod
    def open(cls, url: str) -> JobStore:
        """Connects and creates the tables if missing. `url`: "sqlite:///ABS/PATH.sqlite3"
        (parent folder created), "sqlite://" (memory, tests only) or "postgresql://..."
        ("postgres://" too). Anything else is ValueError naming SPEECHMESH_JOBS_DATABASE_URL."""
        raise NotImplementedError

    def close(self) -> None: ...

    # -- callers ---------------------------------------------------------------------------

    def create(
        self,
        *,
        service: str,
        owner: str,
        method: str,
        request: bytes,
        request_id: str,
        total_items: int,
        uploads: list[str],
        max_queued: int,
        now: float,
    ) -> OperationRecord:
        """A new QUEUED operation. Atomically refuses (QueueFullError) when the service already
        has `max_queued` operations not done (across replicas: the count and the insert are one
        transaction, serialized per service)."""
        raise NotImplementedError

    def get(self, service: str, owner: str, operation_id: str) -> OperationRecord | None:
        """The operation if it exists, belongs to `service` and to `owner`; else None."""
        raise NotImplementedError

    def list(
        self,
        service: str,
        owner: str,
        *,
        states: set[str] | None,
        after: tuple[float, str] | None,
        limit: int,
    ) -> list[OperationRecord]:
        """The owner's operations of a service, newest first (create_time desc, id desc),
        only those in `states` when given, starting after the (create_time, id) key `after`
        (keyset paging); at most `limit`."""
        raise NotImplementedError

    def cancel(
        self, service: str, owner: str, operation_id: str, now: float, error: bytes
    ) -> OperationRecord | None:
        """Requests cancellation. QUEUED: CANCELLED at once with `error` (a serialized
        google.rpc.Status) and end_time. RUNNING: sets cancel_requested (the worker stops and
        calls finish with CANCELLED). Done: unchanged. None when not found for the owner."""
        raise NotImplementedError

    def delete(self, service: str, owner: str, operation_id: str) -> bool:
        """Deletes the operation, its result blobs and events, and the uploads it read that no
        other operation reads. A running operation's worker loses its lease (LeaseLostError on
        its next heartbeat). False when not found for the owner."""
        raise NotImplementedError

    def result_blob(self, operation_id: str, key: str) -> tuple[str, bytes] | None:
        """(content_type, data) of one result blob, or None."""
        raise NotImplementedError

    def queued_count(self, service: str) -> int:
        """Operations of the service not done (QUEUED or RUNNING)."""
        raise NotImplementedError

    # -- workers ---------------------------------------------------------------------------

    def claim(self, service: str, worker: str, lease_s: float, now: float) -> Claim | None:
        """Takes the oldest operation of the service that is QUEUED, or RUNNING with an expired
        lease (its worker died), and not cancel_requested: state RUNNING, attempt + 1,
        start_time now, a fresh lease token, lease_expires now + lease_s. Safe against other
        workers and replicas claiming at the same time (PostgreSQL: FOR UPDATE SKIP LOCKED;
        SQLite: BEGIN IMMEDIATE). An operation whose lease expired while cancel_requested is
        instead finished as CANCELLED (no worker is left to do it). None when nothing is
        waiting."""
        raise NotImplementedError

    def heartbeat(
        self, operation_id: str, token: str, lease_s: float, now: float, progress: Progress | None
    ) -> bool:
        """Renews the lease (lease_expires = now + lease_s) and writes the progress; returns
        cancel_requested. LeaseLostError when `token` is no longer the operation's (or it is
        gone or done)."""
        raise NotImplementedError

    def finish(
        self,
        operation_id: str,
        token: str,
        *,
        state: str,
        now: float,
        response: bytes | None = None,
        error: bytes | None = None,
        blobs: dict[str, tuple[str, bytes]] | None = None,
        progress: Progress | None = None,
    ) -> bool:
        """Ends the operation in `state` (SUCCEEDED with `response` and `blobs` as
        {key: (content_type, data)}, or FAILED/CANCELLED with `error`), clears the lease,
        sets end_time, and records one "finished" event, all in one transaction, only if
        `token` is still the operation's and it is not done. False (nothing written) when the
        lease was lost."""
        raise NotImplementedError

    def events(self, operation_id: str) -> list[tuple[float, str, str]]:
        """(time, kind, worker) rows of an operation, oldest first: "created", "claimed",
        "finished", "cancel_requested" ..."""
        raise NotImplementedError

    # -- uploads ---------------------------------------------------------------------------

    def begin_upload(self, service: str, owner: str, content_type: str, now: float) -> str:
        """A new upload in state WRITING; returns its id."""
        raise NotImplementedError

    def append_upload(self, upload_id: str, index: int, data: bytes) -> None:
        """Stores chunk `index` (0, 1, 2 ...) of a WRITING upload."""
        raise NotImplementedError

    def commit_upload(
        self, upload_id: str, size_bytes: int, sha256: str, now: float, ttl_s: float
    ) -> UploadRecord:
        """WRITING -> READY with its size, digest, create_time now, expire_time now + ttl_s."""
        raise NotImplementedError

    def abort_upload(self, upload_id: str) -> None:
        """Deletes a WRITING upload and its chunks (over the limit, or the client went away)."""
        raise NotImplementedError

    def get_upload(self, service: str, owner: str, upload_id: str) -> UploadRecord | None:
        """The upload if it belongs to the service and owner (any state), else None."""
        raise NotImplementedError

    def read_upload(self, upload_id: str) -> bytes:
        """The bytes of a READY upload, its chunks joined in order."""
        raise NotImplementedError

    # -- retention -------------------------------------------------------------------------

    def cleanup(self, now: float, retention_s: float, abandoned_upload_s: float) -> dict[str, int]:
        """Deletes done operations whose end_time + retention_s passed (with blobs and events);
        marks READY uploads past expire_time EXPIRED and deletes their chunks, unless an
        operation that is not done reads them; deletes EXPIRED upload rows past
        expire_time + retention_s, and WRITING uploads older than abandoned_upload_s (a
        replica died mid-upload). Returns counts by kind."""
        raise NotImplementedError
