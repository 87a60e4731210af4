"""Jobs survive what production does to them, on real processes and real databases: a replica
SIGKILLed mid-way (SQLite: its restart takes the work over), and two replicas sharing one
PostgreSQL. Every job finishes, none is lost, none produces two results (each operation's
events hold exactly one "finished"), and after a takeover the job ran again (attempt 2)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import grpc
from google.longrunning import operations_pb2 as lro_pb2

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.operations.store import JobStore
from tests.postgres import create_database
from tests.servers import AsrProcess
from tests.sounds import voice_like, wav

CLIP = wav(voice_like(12.0, seed=3))


def jobs_env(url: str, worker: str) -> dict[str, str]:
    return {
        "SPEECHMESH_JOBS_DATABASE_URL": url,
        "SPEECHMESH_JOBS_LEASE_S": "2",
        "SPEECHMESH_JOBS_POLL_INTERVAL_S": "0.1",
        "SPEECHMESH_JOBS_CONCURRENCY": "2",
        "SPEECHMESH_ASR_MAX_BATCH_SIZE": "4",
    }


def start(tmp_path, checkpoint, name: str, url: str) -> AsrProcess:
    return AsrProcess(
        tmp_path, str(checkpoint), name, jobs_env(url, name), args=("--engine", "ctranslate2")
    )


async def submit(address: str, count: int) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        asr = asr_pb2_grpc.AsrServiceStub(channel)
        request = asr_pb2.BatchRecognizeRequest(files=[ops_pb2.AudioInput(content=CLIP)])
        return [(await asr.BatchRecognize(request)).name for _ in range(count)]


async def states(address: str, names: list[str]) -> list[lro_pb2.Operation]:
    async with grpc.aio.insecure_channel(address) as channel:
        ops = asr_pb2_grpc.OperationsServiceStub(channel)
        return [await ops.GetOperation(lro_pb2.GetOperationRequest(name=n)) for n in names]


def state_of(op: lro_pb2.Operation) -> int:
    meta = ops_pb2.OperationMetadata()
    op.metadata.Unpack(meta)
    return meta.state


async def wait_all_done(address: str, names: list[str], limit_s: float) -> list:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        ops = await states(address, names)
        if all(op.done for op in ops):
            return ops
        await asyncio.sleep(0.3)
    raise AssertionError(f"not done after {limit_s} s: {Counter(state_of(o) for o in ops)}")


def check_exactly_once(url: str, names: list[str]) -> dict[str, list]:
    """Every operation SUCCEEDED with one result; returns each one's events."""
    store = JobStore.open(url)
    try:
        events = {}
        for name in names:
            op_id = name.rsplit("/", 1)[1]
            kinds = [kind for _, kind, _ in store.events(op_id)]
            assert kinds.count("finished") == 1, (name, kinds)
            events[name] = store.events(op_id)
        return events
    finally:
        store.close()


async def test_sigkill_mid_way_then_restart_finishes_every_job_once(tiny_whisper, tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    first = start(tmp_path, tiny_whisper, "first", url)
    try:
        await first.wait_serving()
        names = await submit(first.address, 20)
        # Mid-way: some jobs done, some running, the rest queued.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = Counter(state_of(op) for op in await states(first.address, names))
            if (
                counts[ops_pb2.OPERATION_STATE_SUCCEEDED] >= 3
                and counts[ops_pb2.OPERATION_STATE_RUNNING]
            ):
                break
            await asyncio.sleep(0.05)
        assert counts[ops_pb2.OPERATION_STATE_QUEUED], f"too late to kill: {counts}"
    finally:
        first.kill()  # SIGKILL: no shutdown, its leases simply stop being renewed
    second = start(tmp_path, tiny_whisper, "second", url)
    try:
        await second.wait_serving()
        done = await wait_all_done(second.address, names, 240)
    finally:
        second.kill()
    assert [state_of(op) for op in done] == [ops_pb2.OPERATION_STATE_SUCCEEDED] * 20
    for op in done:
        result = asr_pb2.BatchRecognizeResponse()
        assert op.response.Unpack(result) and len(result.results) == 1
        assert result.results[0].response.audio_duration.seconds == 12
    events = check_exactly_once(url, names)
    taken_over = [n for n, ev in events.items() if [k for _, k, _ in ev].count("claimed") == 2]
    assert taken_over, "no job was running when the first replica died"


async def test_two_replicas_on_postgresql_share_fifty_jobs(tiny_whisper, tmp_path, postgres_url):
    url = create_database(postgres_url, "replicas")
    replicas = [start(tmp_path, tiny_whisper, name, url) for name in ("left", "right")]
    try:
        for replica in replicas:
            await replica.wait_serving()
        half = await asyncio.gather(
            submit(replicas[0].address, 25), submit(replicas[1].address, 25)
        )
        names = half[0] + half[1]
        done = await wait_all_done(replicas[0].address, names, 300)
    finally:
        for replica in replicas:
            replica.kill()
    assert [state_of(op) for op in done] == [ops_pb2.OPERATION_STATE_SUCCEEDED] * 50
    events = check_exactly_once(url, names)
    finishers = Counter(
        worker for ev in events.values() for _, kind, worker in ev if kind == "finished"
    )
    assert len(finishers) == 2, f"one replica did all the work: {finishers}"
    assert sum(finishers.values()) == 50
