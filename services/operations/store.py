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

import json
import secrets
import string
from dataclasses import dataclass, field

from speechmesh.operations.database import PG_LOCK_NAMESPACE, Database, Session

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

    def __init__(self, db: Database):
        self._db = db
        self._pg = db.dialect == "postgresql"

    @classmethod
    def open(cls, url: str) -> JobStore:
        """Connects and creates the tables if missing. `url`: "sqlite:///ABS/PATH.sqlite3"
        (parent folder created), "sqlite://" (memory, tests only) or "postgresql://..."
        ("postgres://" too). Anything else is ValueError naming SPEECHMESH_JOBS_DATABASE_URL."""
        db = Database(url)
        try:
            db.create_schema()
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self._db.close()

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
        record = OperationRecord(
            id=_new_id(),
            service=service,
            owner=owner,
            method=method,
            request=bytes(request),
            request_id=request_id,
            state=QUEUED,
            create_time=now,
            update_time=now,
            total_items=total_items,
            uploads=list(uploads),
        )
        with self._db.write() as s:
            if self._pg:
                # Serializes creates of one service across replicas until this commits (the
                # SQLite transaction already holds the file's only write lock).
                s.execute(
                    "SELECT pg_advisory_xact_lock(?, hashtext(?))", (PG_LOCK_NAMESPACE, service)
                )
            queued = s.execute(
                "SELECT COUNT(*) FROM lro_operations"
                " WHERE service = ? AND state IN ('QUEUED', 'RUNNING')",
                (service,),
            ).scalar()
            if queued >= max_queued:
                raise QueueFullError(int(queued), max_queued)
            s.execute(
                "INSERT INTO lro_operations (id, service, owner, method, request, request_id,"
                " state, create_time, update_time, total_items, uploads)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    service,
                    owner,
                    method,
                    record.request,
                    request_id,
                    QUEUED,
                    now,
                    now,
                    total_items,
                    json.dumps(record.uploads),
                ),
            )
            s.executemany(
                "INSERT INTO lro_operation_uploads (operation_id, upload_id) VALUES (?, ?)",
                [(record.id, upload) for upload in dict.fromkeys(record.uploads)],
            )
            _event(s, record.id, now, "created", "")
        return record

    def get(self, service: str, owner: str, operation_id: str) -> OperationRecord | None:
        """The operation if it exists, belongs to `service` and to `owner`; else None."""
        with self._db.read() as s:
            row = s.execute(
                f"SELECT {_OP_COLUMNS} FROM lro_operations"
                " WHERE id = ? AND service = ? AND owner = ?",
                (operation_id, service, owner),
            ).one()
        return _operation(row) if row else None

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
        if limit <= 0 or (states is not None and not states):
            return []
        where = ["service = ?", "owner = ?"]
        params: list = [service, owner]
        if states is not None:
            ordered = sorted(states)
            where.append(f"state IN ({', '.join('?' * len(ordered))})")
            params.extend(ordered)
        if after is not None:
            where.append("(create_time < ? OR (create_time = ? AND id < ?))")
            params.extend((after[0], after[0], after[1]))
        params.append(limit)
        with self._db.read() as s:
            rows = s.execute(
                f"SELECT {_OP_COLUMNS} FROM lro_operations WHERE {' AND '.join(where)}"
                " ORDER BY create_time DESC, id DESC LIMIT ?",
                params,
            ).rows
        return [_operation(row) for row in rows]

    def cancel(
        self, service: str, owner: str, operation_id: str, now: float, error: bytes
    ) -> OperationRecord | None:
        """Requests cancellation. QUEUED: CANCELLED at once with `error` (a serialized
        google.rpc.Status) and end_time. RUNNING: sets cancel_requested (the worker stops and
        calls finish with CANCELLED). Done: unchanged. None when not found for the owner."""
        with self._db.write() as s:
            row = s.execute(
                f"SELECT {_OP_COLUMNS} FROM lro_operations"
                " WHERE id = ? AND service = ? AND owner = ? {for_update}",
                (operation_id, service, owner),
            ).one()
            if row is None:
                return None
            record = _operation(row)
            if record.state == QUEUED:
                row = s.execute(
                    "UPDATE lro_operations SET state = 'CANCELLED', error = ?, end_time = ?,"
                    f" update_time = ? WHERE id = ? RETURNING {_OP_COLUMNS}",
                    (bytes(error), now, now, operation_id),
                ).one()
                _event(s, operation_id, now, "cancelled", "")
            elif record.state == RUNNING and not record.cancel_requested:
                # The worker sees the flag on its next heartbeat; should it have died, the next
                # claim finishes the operation with this error once its lease has expired.
                row = s.execute(
                    "UPDATE lro_operations SET cancel_requested = 1, cancel_error = ?,"
                    f" update_time = ? WHERE id = ? RETURNING {_OP_COLUMNS}",
                    (bytes(error), now, operation_id),
                ).one()
                _event(s, operation_id, now, "cancel_requested", "")
            else:
                return record
        return _operation(row)

    def delete(self, service: str, owner: str, operation_id: str) -> bool:
        """Deletes the operation, its result blobs and events, and the uploads it read that no
        other operation reads. A running operation's worker loses its lease (LeaseLostError on
        its next heartbeat). False when not found for the owner."""
        with self._db.write() as s:
            deleted = s.execute(
                "DELETE FROM lro_operations WHERE id = ? AND service = ? AND owner = ?"
                " RETURNING id",
                (operation_id, service, owner),
            ).rows
            if not deleted:
                return False
            uploads = _purge_operations(s, [operation_id])
            for upload_id in uploads:
                gone = s.execute(
                    "DELETE FROM lro_uploads WHERE id = ? AND NOT EXISTS"
                    " (SELECT 1 FROM lro_operation_uploads WHERE upload_id = ?) RETURNING id",
                    (upload_id, upload_id),
                ).rows
                if gone:
                    s.execute("DELETE FROM lro_upload_chunks WHERE upload_id = ?", (upload_id,))
        return True

    def result_blob(self, operation_id: str, key: str) -> tuple[str, bytes] | None:
        """(content_type, data) of one result blob, or None."""
        with self._db.read() as s:
            row = s.execute(
                "SELECT content_type, data FROM lro_result_blobs"
                " WHERE operation_id = ? AND key = ?",
                (operation_id, key),
            ).one()
        return (row[0], bytes(row[1])) if row else None

    def queued_count(self, service: str) -> int:
        """Operations of the service not done (QUEUED or RUNNING)."""
        with self._db.read() as s:
            return int(
                s.execute(
                    "SELECT COUNT(*) FROM lro_operations"
                    " WHERE service = ? AND state IN ('QUEUED', 'RUNNING')",
                    (service,),
                ).scalar()
            )

    # -- workers ---------------------------------------------------------------------------

    def claim(self, service: str, worker: str, lease_s: float, now: float) -> Claim | None:
        """Takes the oldest operation of the service that is QUEUED, or RUNNING with an expired
        lease (its worker died), and not cancel_requested: state RUNNING, attempt + 1,
        start_time now, a fresh lease token, lease_expires now + lease_s. Safe against other
        workers and replicas claiming at the same time (PostgreSQL: FOR UPDATE SKIP LOCKED;
        SQLite: BEGIN IMMEDIATE). An operation whose lease expired while cancel_requested is
        instead finished as CANCELLED (no worker is left to do it). None when nothing is
        waiting."""
        token = _new_id()
        with self._db.write() as s:
            abandoned = s.execute(
                "UPDATE lro_operations SET state = 'CANCELLED', error = cancel_error,"
                " cancel_error = NULL, end_time = ?, update_time = ?, lease_owner = NULL,"
                " lease_token = NULL, lease_expires = NULL"
                " WHERE state = 'RUNNING' AND id IN (SELECT id FROM lro_operations"
                " WHERE service = ? AND state = 'RUNNING' AND cancel_requested = 1"
                " AND lease_expires <= ? {skip_locked}) RETURNING id",
                (now, now, service, now),
            ).rows
            for (operation_id,) in abandoned:
                _event(s, operation_id, now, "cancelled", worker)
            row = s.execute(
                "SELECT id FROM lro_operations WHERE service = ? AND (state = 'QUEUED'"
                " OR (state = 'RUNNING' AND lease_expires <= ? AND cancel_requested = 0))"
                " ORDER BY create_time, id LIMIT 1 {skip_locked}",
                (service, now),
            ).one()
            if row is None:
                return None
            row = s.execute(
                "UPDATE lro_operations SET state = 'RUNNING', attempt = attempt + 1,"
                " start_time = ?, update_time = ?, lease_owner = ?, lease_token = ?,"
                f" lease_expires = ? WHERE id = ? RETURNING {_OP_COLUMNS}",
                (now, now, worker, token, now + lease_s, row[0]),
            ).one()
            _event(s, row[0], now, "claimed", worker)
        return Claim(operation=_operation(row), token=token)

    def heartbeat(
        self, operation_id: str, token: str, lease_s: float, now: float, progress: Progress | None
    ) -> bool:
        """Renews the lease (lease_expires = now + lease_s) and writes the progress; returns
        cancel_requested. LeaseLostError when `token` is no longer the operation's (or it is
        gone or done)."""
        sets, params = ["lease_expires = ?"], [now + lease_s]
        if progress is not None:
            sets.append("update_time = ?")
            params.append(now)
            sets.append(_PROGRESS_SET)
            params.extend(_progress_params(progress))
        with self._db.write() as s:
            row = s.execute(
                f"UPDATE lro_operations SET {', '.join(sets)}"
                " WHERE id = ? AND lease_token = ? AND state = 'RUNNING'"
                " RETURNING cancel_requested",
                (*params, operation_id, token),
            ).one()
        if row is None:
            raise LeaseLostError(f"operation {operation_id} is no longer held by this worker")
        return bool(row[0])

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
        if state not in DONE_STATES:
            raise ValueError(f"finish needs one of {DONE_STATES}, not {state!r}")
        sets = (
            "state = ?, end_time = ?, update_time = ?, response = ?, error = ?,"
            " cancel_error = NULL, lease_owner = NULL, lease_token = NULL, lease_expires = NULL"
        )
        params: list = [
            state,
            now,
            now,
            None if response is None else bytes(response),
            None if error is None else bytes(error),
        ]
        if progress is not None:
            sets += ", " + _PROGRESS_SET
            params.extend(_progress_params(progress))
        try:
            with self._db.write() as s:
                held = s.execute(
                    "SELECT lease_owner FROM lro_operations"
                    " WHERE id = ? AND lease_token = ? AND state = 'RUNNING' {for_update}",
                    (operation_id, token),
                ).one()
                if held is None:
                    return False
                changed = s.execute(
                    f"UPDATE lro_operations SET {sets}"
                    " WHERE id = ? AND lease_token = ? AND state = 'RUNNING'",
                    (*params, operation_id, token),
                ).rowcount
                if changed != 1:
                    raise _Rollback
                s.executemany(
                    "INSERT INTO lro_result_blobs (operation_id, key, content_type, data)"
                    " VALUES (?, ?, ?, ?)",
                    [
                        (operation_id, key, content_type, bytes(data))
                        for key, (content_type, data) in (blobs or {}).items()
                    ],
                )
                _event(s, operation_id, now, "finished", held[0] or "")
        except _Rollback:
            return False
        return True

    def events(self, operation_id: str) -> list[tuple[float, str, str]]:
        """(time, kind, worker) rows of an operation, oldest first: "created", "claimed",
        "finished", "cancel_requested" ..."""
        with self._db.read() as s:
            rows = s.execute(
                "SELECT time, kind, worker FROM lro_events WHERE operation_id = ?"
                " ORDER BY time, seq",
                (operation_id,),
            ).rows
        return [(float(t), kind, worker) for t, kind, worker in rows]

    # -- uploads ---------------------------------------------------------------------------

    def begin_upload(self, service: str, owner: str, content_type: str, now: float) -> str:
        """A new upload in state WRITING; returns its id."""
        upload_id = _new_id()
        with self._db.write() as s:
            s.execute(
                "INSERT INTO lro_uploads (id, service, owner, content_type, size_bytes, sha256,"
                " create_time, expire_time, state) VALUES (?, ?, ?, ?, 0, '', ?, ?, 'WRITING')",
                (upload_id, service, owner, content_type, now, now),
            )
        return upload_id

    def append_upload(self, upload_id: str, index: int, data: bytes) -> None:
        """Stores chunk `index` (0, 1, 2 ...) of a WRITING upload."""
        # Storing the same index again replaces it; LookupError when the upload is not being
        # written (aborted, committed, or cleaned up as abandoned).
        with self._db.write() as s:
            if not s.execute(
                "SELECT 1 FROM lro_uploads WHERE id = ? AND state = 'WRITING' {for_update}",
                (upload_id,),
            ).rows:
                raise LookupError(f"upload {upload_id} is not being written")
            s.execute(
                "INSERT INTO lro_upload_chunks (upload_id, idx, data) VALUES (?, ?, ?)"
                " ON CONFLICT (upload_id, idx) DO UPDATE SET data = excluded.data",
                (upload_id, index, bytes(data)),
            )

    def commit_upload(
        self, upload_id: str, size_bytes: int, sha256: str, now: float, ttl_s: float
    ) -> UploadRecord:
        """WRITING -> READY with its size, digest, create_time now, expire_time now + ttl_s."""
        with self._db.write() as s:
            row = s.execute(
                "UPDATE lro_uploads SET state = 'READY', size_bytes = ?, sha256 = ?,"
                " create_time = ?, expire_time = ? WHERE id = ? AND state = 'WRITING'"
                f" RETURNING {_UPLOAD_COLUMNS}",
                (size_bytes, sha256, now, now + ttl_s, upload_id),
            ).one()
        if row is None:
            raise LookupError(f"upload {upload_id} is not being written")
        return _upload(row)

    def abort_upload(self, upload_id: str) -> None:
        """Deletes a WRITING upload and its chunks (over the limit, or the client went away)."""
        with self._db.write() as s:
            if s.execute(
                "DELETE FROM lro_uploads WHERE id = ? AND state = 'WRITING' RETURNING id",
                (upload_id,),
            ).rows:
                s.execute("DELETE FROM lro_upload_chunks WHERE upload_id = ?", (upload_id,))

    def get_upload(self, service: str, owner: str, upload_id: str) -> UploadRecord | None:
        """The upload if it belongs to the service and owner (any state), else None."""
        with self._db.read() as s:
            row = s.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM lro_uploads"
                " WHERE id = ? AND service = ? AND owner = ?",
                (upload_id, service, owner),
            ).one()
        return _upload(row) if row else None

    def read_upload(self, upload_id: str) -> bytes:
        """The bytes of a READY upload, its chunks joined in order."""
        # One statement, so one snapshot: cleanup cannot expire it half-way through.
        with self._db.read() as s:
            rows = s.execute(
                "SELECT c.data FROM lro_uploads u JOIN lro_upload_chunks c"
                " ON c.upload_id = u.id WHERE u.id = ? AND u.state = 'READY' ORDER BY c.idx",
                (upload_id,),
            ).rows
            if (
                not rows
                and not s.execute(
                    "SELECT 1 FROM lro_uploads WHERE id = ? AND state = 'READY'", (upload_id,)
                ).rows
            ):
                # LookupError: gone, expired or still being written.
                raise LookupError(f"upload {upload_id} is not ready")
        return b"".join(bytes(row[0]) for row in rows)

    # -- retention -------------------------------------------------------------------------

    def cleanup(self, now: float, retention_s: float, abandoned_upload_s: float) -> dict[str, int]:
        """Deletes done operations whose end_time + retention_s passed (with blobs and events);
        marks READY uploads past expire_time EXPIRED and deletes their chunks, unless an
        operation that is not done reads them; deletes EXPIRED upload rows past
        expire_time + retention_s, and WRITING uploads older than abandoned_upload_s (a
        replica died mid-upload). Returns counts by kind."""
        # Keys: "operations" (deleted), "uploads_expired" (READY -> EXPIRED), "uploads_deleted"
        # (EXPIRED rows removed), "uploads_abandoned" (WRITING uploads removed).
        counts = {"operations": 0, "uploads_expired": 0, "uploads_deleted": 0}
        counts["uploads_abandoned"] = 0
        while True:  # in batches, so that no transaction holds the write lock for long
            with self._db.write() as s:
                ids = [
                    row[0]
                    for row in s.execute(
                        "SELECT id FROM lro_operations WHERE end_time <= ?"
                        " AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED')"
                        " ORDER BY end_time LIMIT ? {skip_locked}",
                        (now - retention_s, _CLEANUP_BATCH),
                    ).rows
                ]
                s.executemany("DELETE FROM lro_operations WHERE id = ?", [(i,) for i in ids])
                _purge_operations(s, ids)
            counts["operations"] += len(ids)
            if len(ids) < _CLEANUP_BATCH:
                break
        with self._db.write() as s:
            expired = s.execute(
                "UPDATE lro_uploads SET state = 'EXPIRED' WHERE state = 'READY' AND id IN"
                " (SELECT u.id FROM lro_uploads u WHERE u.state = 'READY'"
                " AND u.expire_time <= ? AND NOT EXISTS (SELECT 1 FROM lro_operation_uploads r"
                " JOIN lro_operations o ON o.id = r.operation_id WHERE r.upload_id = u.id"
                " AND o.state IN ('QUEUED', 'RUNNING'))) RETURNING id",
                (now,),
            ).rows
            _delete_chunks(s, expired)
            counts["uploads_expired"] = len(expired)
        for kind, state, column, before in (
            ("uploads_deleted", "EXPIRED", "expire_time", now - retention_s),
            ("uploads_abandoned", "WRITING", "create_time", now - abandoned_upload_s),
        ):
            with self._db.write() as s:
                gone = s.execute(
                    f"DELETE FROM lro_uploads WHERE state = ? AND {column} <= ? RETURNING id",
                    (state, before),
                ).rows
                _delete_chunks(s, gone)
                counts[kind] = len(gone)
        return counts


# -- private helpers -------------------------------------------------------------------------

_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 24  # 36**24 ~ 2**124
_CLEANUP_BATCH = 500

_OP_FIELDS = (
    "id",
    "service",
    "owner",
    "method",
    "request",
    "request_id",
    "state",
    "create_time",
    "update_time",
    "start_time",
    "end_time",
    "attempt",
    "cancel_requested",
    "progress_percent",
    "processed_audio_s",
    "total_audio_s",
    "processed_items",
    "total_items",
    "response",
    "error",
    "uploads",
    "lease_owner",
    "lease_token",
    "lease_expires",
)
_OP_COLUMNS = ", ".join(_OP_FIELDS)
_UPLOAD_FIELDS = (
    "id",
    "service",
    "owner",
    "content_type",
    "size_bytes",
    "sha256",
    "create_time",
    "expire_time",
    "state",
)
_UPLOAD_COLUMNS = ", ".join(_UPLOAD_FIELDS)
_PROGRESS_SET = (
    "progress_percent = ?, processed_audio_s = ?, total_audio_s = ?, processed_items = ?,"
    " total_items = ?"
)


class _Rollback(Exception):
    """Raised inside a transaction to undo it."""


def _new_id() -> str:
    """A random id of [a-z0-9] (it goes in URL paths)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def _float(value) -> float | None:
    return None if value is None else float(value)


def _bytes(value) -> bytes | None:
    return None if value is None else bytes(value)


def _operation(row: tuple) -> OperationRecord:
    v = dict(zip(_OP_FIELDS, row, strict=True))
    return OperationRecord(
        id=v["id"],
        service=v["service"],
        owner=v["owner"],
        method=v["method"],
        request=bytes(v["request"]),
        request_id=v["request_id"],
        state=v["state"],
        create_time=float(v["create_time"]),
        update_time=float(v["update_time"]),
        start_time=_float(v["start_time"]),
        end_time=_float(v["end_time"]),
        attempt=int(v["attempt"]),
        cancel_requested=bool(v["cancel_requested"]),
        progress_percent=float(v["progress_percent"]),
        processed_audio_s=float(v["processed_audio_s"]),
        total_audio_s=_float(v["total_audio_s"]),
        processed_items=int(v["processed_items"]),
        total_items=int(v["total_items"]),
        response=_bytes(v["response"]),
        error=_bytes(v["error"]),
        uploads=json.loads(v["uploads"]),
        lease_owner=v["lease_owner"],
        lease_token=v["lease_token"],
        lease_expires=_float(v["lease_expires"]),
    )


def _upload(row: tuple) -> UploadRecord:
    v = dict(zip(_UPLOAD_FIELDS, row, strict=True))
    return UploadRecord(
        id=v["id"],
        service=v["service"],
        owner=v["owner"],
        content_type=v["content_type"],
        size_bytes=int(v["size_bytes"]),
        sha256=v["sha256"],
        create_time=float(v["create_time"]),
        expire_time=float(v["expire_time"]),
        state=v["state"],
    )


def _progress_params(progress: Progress) -> tuple:
    return (
        float(progress.percent),
        float(progress.processed_audio_s),
        _float(progress.total_audio_s),
        int(progress.processed_items),
        int(progress.total_items),
    )


def _event(s: Session, operation_id: str, now: float, kind: str, worker: str) -> None:
    s.execute(
        "INSERT INTO lro_events (operation_id, time, kind, worker) VALUES (?, ?, ?, ?)",
        (operation_id, now, kind, worker),
    )


def _purge_operations(s: Session, ids: list[str]) -> list[str]:
    """Deletes what hangs off deleted operations (blobs, events, upload references); returns
    the ids of the uploads they read."""
    uploads: dict[str, None] = {}
    for operation_id in ids:
        s.execute("DELETE FROM lro_result_blobs WHERE operation_id = ?", (operation_id,))
        s.execute("DELETE FROM lro_events WHERE operation_id = ?", (operation_id,))
        for (upload_id,) in s.execute(
            "DELETE FROM lro_operation_uploads WHERE operation_id = ? RETURNING upload_id",
            (operation_id,),
        ).rows:
            uploads[upload_id] = None
    return list(uploads)


def _delete_chunks(s: Session, upload_rows: list[tuple]) -> None:
    s.executemany("DELETE FROM lro_upload_chunks WHERE upload_id = ?", upload_rows)
