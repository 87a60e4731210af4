"""The durable job store on both of its databases: SQLite files and a real PostgreSQL server.

Every test runs against a fresh SQLite file and a fresh PostgreSQL database. Concurrency is real:
threads, two JobStore objects on one database (two replicas), and two OS processes sharing one
SQLite file. Times are the `now` the tests pass in (the store never reads a clock).
"""

from __future__ import annotations

import itertools
import multiprocessing
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from speechmesh.operations.store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobStore,
    LeaseLostError,
    Progress,
    QueueFullError,
)
from tests.postgres import create_database

T0 = 1_700_000_000.0
_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A URL of an empty database: a SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs/jobs.sqlite3"
    server = request.getfixturevalue("postgres_url")
    return create_database(server, f"store_test_{next(_databases)}")


@pytest.fixture
def store(store_url):
    store = JobStore.open(store_url)
    yield store
    store.close()


@pytest.fixture
def replicas(store_url):
    """Two stores on one database, as two replicas (or two processes) would hold."""
    stores = [JobStore.open(store_url), JobStore.open(store_url)]
    yield stores
    for store in stores:
        store.close()


def make(store: JobStore, now: float = T0, **overrides):
    fields = {
        "service": "asr",
        "owner": "alice",
        "method": "speechmesh.asr.v1.AsrService/BatchRecognize",
        "request": b"\x0a\x03req",
        "request_id": "req-1",
        "total_items": 2,
        "uploads": [],
        "max_queued": 1000,
    }
    fields.update(overrides)
    return store.create(now=now, **fields)


def finished_count(store: JobStore, operation_id: str) -> int:
    return sum(1 for _, kind, _ in store.events(operation_id) if kind == "finished")


def test_open_rejects_unknown_urls_and_creates_sqlite_folders(tmp_path):
    for url in ("mysql://x/y", "sqlite:///", "/tmp/jobs.sqlite3", ""):
        with pytest.raises(ValueError, match="SPEECHMESH_JOBS_DATABASE_URL"):
            JobStore.open(url)
    path = tmp_path / "a" / "b" / "jobs.sqlite3"
    first = JobStore.open(f"sqlite:///{path}")
    record = make(first)
    first.close()
    assert path.is_file()
    again = JobStore.open(f"sqlite:///{path}")  # the schema exists already
    assert again.get("asr", "alice", record.id) == record
    again.close()
    memory = JobStore.open("sqlite://")
    assert memory.get("asr", "alice", make(memory).id) is not None
    memory.close()


def test_open_concurrently(store_url):
    """Several stores opening one new database at once all create (or find) the schema."""
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: JobStore.open(store_url), range(4)))
    records = [make(store) for store in stores]
    assert {s.queued_count("asr") for s in stores} == {len(records)}
    for store in stores:
        store.close()


def test_create_and_get_belong_to_their_owner_and_service(store):
    record = make(store, uploads=["up1", "up2"])
    assert re.fullmatch(r"[a-z0-9]{24}", record.id)
    assert record.state == QUEUED and not record.done and record.attempt == 0
    got = store.get("asr", "alice", record.id)
    assert got == record
    assert got.uploads == ["up1", "up2"]
    assert got.request == b"\x0a\x03req" and got.total_items == 2
    assert got.create_time == got.update_time == T0
    assert store.get("asr", "bob", record.id) is None
    assert store.get("tts", "alice", record.id) is None
    assert store.get("asr", "alice", "nosuchoperation") is None
    assert store.events(record.id) == [(T0, "created", "")]
    assert len({make(store).id for _ in range(20)}) == 20


def test_list_is_newest_first_filtered_and_keyset_paged(store):
    # Two share a create_time: the id breaks the tie (descending).
    times = [T0 + 1, T0 + 3, T0 + 2, T0 + 3, T0 + 5, T0 + 4, T0 + 0.5]
    records = [make(store, now=t) for t in times]
    make(store, owner="bob", now=T0 + 6)
    make(store, service="tts")
    claim = store.claim("asr", "w1", 60, T0 + 10)  # the oldest: T0 + 0.5
    assert claim.operation.id == records[6].id
    store.finish(claim.operation.id, claim.token, state=SUCCEEDED, now=T0 + 11, response=b"r")
    store.cancel("asr", "alice", records[0].id, T0 + 12, b"cancelled")
    expected = [r.id for r in sorted(records, key=lambda r: (r.create_time, r.id), reverse=True)]

    pages, after = [], None
    while True:
        page = store.list("asr", "alice", states=None, after=after, limit=3)
        if not page:
            break
        pages.append([r.id for r in page])
        after = (page[-1].create_time, page[-1].id)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == expected

    queued = store.list("asr", "alice", states={QUEUED}, after=None, limit=100)
    assert [r.id for r in queued] == [
        i for i in expected if i not in {records[0].id, records[6].id}
    ]
    assert all(r.state == QUEUED for r in queued)
    done = store.list("asr", "alice", states={SUCCEEDED, CANCELLED}, after=None, limit=100)
    assert [(r.id, r.state) for r in done] == [
        (records[0].id, CANCELLED),
        (records[6].id, SUCCEEDED),
    ]
    assert store.list("asr", "alice", states={FAILED}, after=None, limit=100) == []
    assert store.list("asr", "carol", states=None, after=None, limit=100) == []
    assert len(store.list("asr", "bob", states=None, after=None, limit=100)) == 1


def test_queue_limit(store):
    kept = [make(store, max_queued=3) for _ in range(3)]
    with pytest.raises(QueueFullError) as raised:
        make(store, max_queued=3)
    assert (raised.value.queued, raised.value.limit) == (3, 3)
    assert store.queued_count("asr") == 3
    assert len(store.list("asr", "alice", states=None, after=None, limit=10)) == 3
    make(store, service="tts", max_queued=3)  # another service has its own queue
    # A running job still counts; a done one (or a cancelled queued one) frees its place.
    claim = store.claim("asr", "w", 60, T0)
    with pytest.raises(QueueFullError):
        make(store, max_queued=3)
    store.finish(claim.operation.id, claim.token, state=FAILED, now=T0, error=b"e")
    make(store, max_queued=3)
    still_queued = next(r for r in kept if r.id != claim.operation.id)
    assert store.cancel("asr", "alice", still_queued.id, T0, b"c").state == CANCELLED
    make(store, max_queued=3)
    assert store.queued_count("asr") == 3


def test_queue_limit_holds_under_concurrent_creates(replicas):
    """Many threads on two replicas create at once: never more than the limit get in."""
    limit = 25

    def create(i: int) -> bool:
        try:
            make(replicas[i % 2], owner=f"user{i % 5}", max_queued=limit)
            return True
        except QueueFullError:
            return False

    with ThreadPoolExecutor(8) as pool:
        created = sum(pool.map(create, range(80)))
    assert created == limit
    assert replicas[0].queued_count("asr") == limit


def test_claim_takes_the_oldest_and_leases_it(store):
    assert store.claim("asr", "w1", 30, T0) is None
    later, oldest, middle = (make(store, now=T0 + d) for d in (3, 1, 2))
    make(store, service="tts", now=T0)  # another service's queue
    claims = [store.claim("asr", "w1", 30, T0 + 10) for _ in range(3)]
    assert [c.operation.id for c in claims] == [oldest.id, middle.id, later.id]
    first = claims[0]
    op = first.operation
    assert (op.state, op.attempt, op.start_time) == (RUNNING, 1, T0 + 10)
    assert (op.lease_owner, op.lease_token, op.lease_expires) == ("w1", first.token, T0 + 40)
    assert len({c.token for c in claims}) == 3
    assert store.get("asr", "alice", op.id) == op
    assert store.events(op.id) == [(T0 + 1, "created", ""), (T0 + 10, "claimed", "w1")]
    assert store.claim("asr", "w1", 30, T0 + 11) is None  # leases still valid


def test_concurrent_claims_take_each_operation_once(replicas):
    ids = {make(replicas[0], now=T0 + i).id for i in range(50)}
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        store = replicas[n % 2]
        start.wait()
        while (claim := store.claim("asr", f"w{n}", 60, T0 + 100)) is not None:
            assert claim.operation.attempt == 1
            with lock:
                claimed.append(claim.operation.id)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert Counter(claimed) == Counter(ids)
    assert replicas[1].queued_count("asr") == 50
    assert replicas[0].claim("asr", "late", 60, T0 + 101) is None


def test_expired_lease_is_taken_over_and_the_old_worker_writes_nothing(store):
    record = make(store)
    old = store.claim("asr", "w1", 10, T0)
    assert store.claim("asr", "w2", 10, T0 + 5) is None
    assert store.heartbeat(record.id, old.token, 10, T0 + 5, None) is False  # renewed to +15
    assert store.claim("asr", "w2", 10, T0 + 14) is None
    new = store.claim("asr", "w2", 10, T0 + 16)
    assert new.operation.id == record.id
    assert (new.operation.attempt, new.operation.lease_owner) == (2, "w2")
    assert new.token != old.token

    with pytest.raises(LeaseLostError):
        store.heartbeat(record.id, old.token, 10, T0 + 17, Progress(percent=99))
    assert not store.finish(
        record.id,
        old.token,
        state=SUCCEEDED,
        now=T0 + 17,
        response=b"stale",
        blobs={"audio": ("audio/wav", b"stale")},
    )
    current = store.get("asr", "alice", record.id)
    assert (current.state, current.response, current.progress_percent) == (RUNNING, None, 0.0)
    assert store.result_blob(record.id, "audio") is None
    assert finished_count(store, record.id) == 0

    assert store.heartbeat(record.id, new.token, 10, T0 + 18, Progress(percent=50)) is False
    assert store.finish(record.id, new.token, state=SUCCEEDED, now=T0 + 19, response=b"fresh")
    assert store.get("asr", "alice", record.id).response == b"fresh"
    assert [k for _, k, _ in store.events(record.id)] == [
        "created",
        "claimed",
        "claimed",
        "finished",
    ]


def test_heartbeat_writes_progress(store):
    record = make(store)
    claim = store.claim("asr", "w1", 10, T0)
    progress = Progress(
        percent=40.0, processed_audio_s=12.5, total_audio_s=30.0, processed_items=1, total_items=2
    )
    assert store.heartbeat(record.id, claim.token, 10, T0 + 3, progress) is False
    op = store.get("asr", "alice", record.id)
    assert (op.progress_percent, op.processed_audio_s, op.total_audio_s) == (40.0, 12.5, 30.0)
    assert (op.processed_items, op.total_items, op.update_time) == (1, 2, T0 + 3)
    assert op.lease_expires == T0 + 13
    with pytest.raises(LeaseLostError):
        store.heartbeat(record.id, "not-the-token", 10, T0 + 4, None)


def test_finish_writes_once(store):
    record = make(store)
    claim = store.claim("asr", "w1", 60, T0)
    with pytest.raises(ValueError):
        store.finish(record.id, claim.token, state=RUNNING, now=T0)
    blobs = {"audio/0": ("audio/wav", b"RIFF0"), "audio/1": ("audio/flac", b"fLaC1")}

    def finish(_):
        return store.finish(
            record.id,
            claim.token,
            state=SUCCEEDED,
            now=T0 + 5,
            response=b"response",
            blobs=blobs,
            progress=Progress(percent=100.0, processed_items=2, total_items=2),
        )

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(finish, range(6)))
    assert results.count(True) == 1
    assert finish(0) is False
    op = store.get("asr", "alice", record.id)
    assert (op.state, op.done, op.response, op.error) == (SUCCEEDED, True, b"response", None)
    assert (op.end_time, op.progress_percent, op.processed_items) == (T0 + 5, 100.0, 2)
    assert (op.lease_owner, op.lease_token, op.lease_expires) == (None, None, None)
    assert store.result_blob(record.id, "audio/0") == ("audio/wav", b"RIFF0")
    assert store.result_blob(record.id, "audio/1") == ("audio/flac", b"fLaC1")
    assert store.result_blob(record.id, "audio/2") is None
    assert store.events(record.id)[-1] == (T0 + 5, "finished", "w1")
    assert finished_count(store, record.id) == 1
    with pytest.raises(LeaseLostError):  # done
        store.heartbeat(record.id, claim.token, 10, T0 + 6, None)
    assert store.claim("asr", "w2", 60, T0 + 1000) is None


def test_cancel_queued_running_and_done(store):
    queued, running, done = make(store, now=T0), make(store, now=T0 + 1), make(store, now=T0 + 2)
    assert store.cancel("asr", "bob", queued.id, T0 + 3, b"err") is None
    assert store.cancel("asr", "alice", "missing", T0 + 3, b"err") is None
    cancelled = store.cancel("asr", "alice", queued.id, T0 + 3, b"status:cancelled")
    assert (cancelled.state, cancelled.error, cancelled.end_time) == (
        CANCELLED,
        b"status:cancelled",
        T0 + 3,
    )
    assert store.get("asr", "alice", queued.id) == cancelled
    assert store.events(queued.id)[-1] == (T0 + 3, "cancelled", "")

    run_claim = store.claim("asr", "w1", 60, T0 + 4)
    done_claim = store.claim("asr", "w2", 60, T0 + 4)
    assert (run_claim.operation.id, done_claim.operation.id) == (running.id, done.id)
    assert store.finish(done.id, done_claim.token, state=SUCCEEDED, now=T0 + 5, response=b"r")

    flagged = store.cancel("asr", "alice", running.id, T0 + 6, b"status:cancelled")
    assert (flagged.state, flagged.cancel_requested, flagged.error) == (RUNNING, True, None)
    assert store.events(running.id)[-1] == (T0 + 6, "cancel_requested", "")
    assert store.heartbeat(running.id, run_claim.token, 60, T0 + 7, None) is True
    assert store.finish(
        running.id, run_claim.token, state=CANCELLED, now=T0 + 8, error=b"status:cancelled"
    )
    stopped = store.get("asr", "alice", running.id)
    assert (stopped.state, stopped.error, stopped.end_time) == (
        CANCELLED,
        b"status:cancelled",
        T0 + 8,
    )

    before = store.get("asr", "alice", done.id)
    assert store.cancel("asr", "alice", done.id, T0 + 9, b"err") == before
    assert before.state == SUCCEEDED
    assert [k for _, k, _ in store.events(done.id)] == ["created", "claimed", "finished"]
    assert store.claim("asr", "w3", 60, T0 + 1000) is None


def test_claim_finishes_an_abandoned_cancelled_operation(store):
    abandoned = make(store, now=T0)
    claim = store.claim("asr", "w1", 10, T0)
    store.cancel("asr", "alice", abandoned.id, T0 + 1, b"status:cancelled")
    assert store.claim("asr", "w2", 10, T0 + 5) is None  # lease still valid: the worker stops
    assert store.get("asr", "alice", abandoned.id).state == RUNNING
    waiting = make(store, now=T0 + 6)
    # The worker died: its lease expires; the next claim cancels it instead of running it.
    taken = store.claim("asr", "w2", 10, T0 + 20)
    assert taken.operation.id == waiting.id
    op = store.get("asr", "alice", abandoned.id)
    assert (op.state, op.error, op.end_time, op.attempt) == (
        CANCELLED,
        b"status:cancelled",
        T0 + 20,
        1,
    )
    assert op.lease_token is None
    assert store.events(abandoned.id)[-1] == (T0 + 20, "cancelled", "w2")
    assert not store.finish(abandoned.id, claim.token, state=SUCCEEDED, now=T0 + 21, response=b"x")
    assert finished_count(store, abandoned.id) == 0
    assert store.queued_count("asr") == 1


def test_delete_removes_results_events_and_unshared_uploads(store):
    shared, own = (upload(store, b"shared"), upload(store, b"own"))
    record = make(store, uploads=[shared, own])
    other = make(store, now=T0 + 1, uploads=[shared])
    claim = store.claim("asr", "w1", 60, T0)
    assert claim.operation.id == record.id
    store.finish(
        record.id, claim.token, state=SUCCEEDED, now=T0 + 1, blobs={"srt": ("text/srt", b"1")}
    )
    assert store.delete("asr", "bob", record.id) is False
    assert store.delete("tts", "alice", record.id) is False
    assert store.delete("asr", "alice", record.id) is True
    assert store.get("asr", "alice", record.id) is None
    assert store.result_blob(record.id, "srt") is None
    assert store.events(record.id) == []
    assert store.get_upload("asr", "alice", own) is None
    with pytest.raises(LookupError):
        store.read_upload(own)
    assert store.read_upload(shared) == b"shared"
    assert store.delete("asr", "alice", record.id) is False

    # Deleting a running operation takes the lease from its worker; the last reader of an
    # upload takes it with it.
    running = store.claim("asr", "w2", 60, T0 + 2)
    assert running.operation.id == other.id
    assert store.delete("asr", "alice", other.id) is True
    with pytest.raises(LeaseLostError):
        store.heartbeat(other.id, running.token, 60, T0 + 3, None)
    assert not store.finish(other.id, running.token, state=SUCCEEDED, now=T0 + 3, response=b"x")
    assert store.result_blob(other.id, "srt") is None
    assert store.get_upload("asr", "alice", shared) is None
    assert store.events(other.id) == []


def upload(store: JobStore, data: bytes, now: float = T0, ttl_s: float = 3600, owner="alice"):
    upload_id = store.begin_upload("asr", owner, "audio/wav", now)
    for i in range(0, len(data), 4):
        store.append_upload(upload_id, i // 4, data[i : i + 4])
    store.commit_upload(upload_id, len(data), "digest", now, ttl_s)
    return upload_id


def test_uploads(store):
    upload_id = store.begin_upload("asr", "alice", "audio/flac", T0)
    assert re.fullmatch(r"[a-z0-9]{24}", upload_id)
    writing = store.get_upload("asr", "alice", upload_id)
    assert (writing.state, writing.content_type, writing.size_bytes) == ("WRITING", "audio/flac", 0)
    with pytest.raises(LookupError):
        store.read_upload(upload_id)  # not READY yet
    chunks = [b"\x00" * 1000, b"\x01" * 7, b"", b"\xff" * 300_000]
    for index in (1, 0, 3, 2):  # stored in any order, read in index order
        store.append_upload(upload_id, index, chunks[index])
    store.append_upload(upload_id, 1, chunks[1])  # a retried chunk replaces itself
    data = b"".join(chunks)
    ready = store.commit_upload(upload_id, len(data), "abc123", T0 + 2, 600)
    assert (ready.state, ready.size_bytes, ready.sha256) == ("READY", len(data), "abc123")
    assert (ready.create_time, ready.expire_time) == (T0 + 2, T0 + 602)
    assert store.get_upload("asr", "alice", upload_id) == ready
    assert store.get_upload("asr", "bob", upload_id) is None
    assert store.get_upload("tts", "alice", upload_id) is None
    assert store.read_upload(upload_id) == data
    with pytest.raises(LookupError):
        store.append_upload(upload_id, 4, b"late")
    with pytest.raises(LookupError):
        store.commit_upload(upload_id, 1, "x", T0 + 3, 600)
    store.abort_upload(upload_id)  # only WRITING uploads are aborted
    assert store.read_upload(upload_id) == data

    empty = store.begin_upload("asr", "alice", "audio/wav", T0)
    store.commit_upload(empty, 0, "e3b0", T0, 600)
    assert store.read_upload(empty) == b""

    aborted = store.begin_upload("asr", "alice", "audio/wav", T0)
    store.append_upload(aborted, 0, b"partial")
    store.abort_upload(aborted)
    assert store.get_upload("asr", "alice", aborted) is None
    with pytest.raises(LookupError):
        store.append_upload(aborted, 1, b"more")
    with pytest.raises(LookupError):
        store.read_upload("nosuchupload")


def test_cleanup(store):
    day = 86400.0
    # Most uploads expire at T0 + 1.5 days.
    read_by_queued = upload(store, b"queued", ttl_s=1.5 * day)
    read_by_running = upload(store, b"running", ttl_s=1.5 * day)
    read_by_done = upload(store, b"done", ttl_s=1.5 * day)
    lone = upload(store, b"lone", ttl_s=1.5 * day)
    fresh = upload(store, b"fresh", ttl_s=10 * day)
    long_expired = upload(store, b"old", now=T0 - 3 * day, ttl_s=60)
    writing_old = store.begin_upload("asr", "alice", "audio/wav", T0)
    writing_new = store.begin_upload("asr", "alice", "audio/wav", T0 + 1.5 * day)

    old_done = make(store, now=T0)
    recent_done = make(store, now=T0 + 1, uploads=[read_by_done])
    running = make(store, now=T0 + 2, uploads=[read_by_running])
    for record, end in ((old_done, T0 + 10), (recent_done, T0 + 1.5 * day)):
        claim = store.claim("asr", "w", 60, T0 + 5)
        assert claim.operation.id == record.id
        assert store.finish(
            record.id, claim.token, state=SUCCEEDED, now=end, blobs={"a": ("audio/wav", b"x")}
        )
    assert store.claim("asr", "w", 10 * day, T0 + 5).operation.id == running.id
    queued = make(store, now=T0 + 3, uploads=[read_by_queued])

    counts = store.cleanup(T0 + 2 * day, retention_s=day, abandoned_upload_s=day)
    assert counts == {
        "operations": 1,  # old_done; recent_done ended less than a day ago
        "uploads_expired": 3,  # read_by_done (its reader is done), lone, long_expired
        "uploads_deleted": 1,  # long_expired: EXPIRED in this pass, and a day past expiry
        "uploads_abandoned": 1,  # writing_old
    }
    assert store.get("asr", "alice", old_done.id) is None
    assert store.result_blob(old_done.id, "a") is None
    assert store.events(old_done.id) == []
    assert store.get("asr", "alice", recent_done.id).state == SUCCEEDED
    assert store.result_blob(recent_done.id, "a") == ("audio/wav", b"x")
    assert store.get("asr", "alice", running.id).state == RUNNING
    assert store.get("asr", "alice", queued.id).state == QUEUED
    assert store.read_upload(read_by_queued) == b"queued"
    assert store.read_upload(read_by_running) == b"running"
    assert store.read_upload(fresh) == b"fresh"
    for expired in (read_by_done, lone):
        assert store.get_upload("asr", "alice", expired).state == "EXPIRED"
        with pytest.raises(LookupError):
            store.read_upload(expired)
    assert store.get_upload("asr", "alice", long_expired) is None
    assert store.get_upload("asr", "alice", writing_old) is None
    assert store.get_upload("asr", "alice", writing_new).state == "WRITING"

    assert store.cleanup(T0 + 3 * day, retention_s=day, abandoned_upload_s=day) == {
        "operations": 1,  # recent_done
        "uploads_expired": 0,
        "uploads_deleted": 2,  # read_by_done and lone
        "uploads_abandoned": 1,  # writing_new
    }
    assert store.get("asr", "alice", recent_done.id) is None
    assert store.cleanup(T0 + 3 * day, retention_s=day, abandoned_upload_s=day) == dict.fromkeys(
        ("operations", "uploads_expired", "uploads_deleted", "uploads_abandoned"), 0
    )
    assert store.get("asr", "alice", running.id).state == RUNNING
    assert store.read_upload(read_by_queued) == b"queued"
    assert store.read_upload(read_by_running) == b"running"


def _claim_all(url: str, worker: str, start, results) -> None:
    """One process: claims and finishes operations until none is left."""
    store = JobStore.open(url)
    start.wait()
    claimed = []
    while (claim := store.claim("asr", worker, 60, T0 + 100)) is not None:
        claimed.append(claim.operation.id)
        time.sleep(0.01)  # the work, outside any transaction
        assert store.finish(
            claim.operation.id, claim.token, state=SUCCEEDED, now=T0 + 101, response=b"ok"
        )
    store.close()
    results.put((worker, claimed))


def test_two_processes_share_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    store = JobStore.open(url)
    ids = {make(store, now=T0 + i).id for i in range(60)}
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_claim_all, args=(url, f"p{n}", start, results)) for n in range(2)
    ]
    for process in processes:
        process.start()
    claimed = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert Counter(claimed["p0"] + claimed["p1"]) == Counter(ids)
    assert claimed["p0"] and claimed["p1"], "both processes took work"
    assert all(finished_count(store, i) == 1 for i in ids)
    assert store.queued_count("asr") == 0
    assert {r.state for r in store.list("asr", "alice", states=None, after=None, limit=100)} == {
        SUCCEEDED
    }
    store.close()
