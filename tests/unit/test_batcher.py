"""MicroBatcher: batch forming, keys, priorities, back-pressure, cancellation, failures.

run_batch runs on the batcher's worker thread and blocks on a threading.Event
while a "blocker" job is in its batch, so tests decide exactly which jobs are
queued when the next batch forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator

import pytest

from speechmesh.inference.batcher import (
    PRIORITY_BACKGROUND,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    MicroBatcher,
    QueueFullError,
    gather_all,
)

WAIT_S = 5.0
_names = itertools.count()


class Model:
    """A fake model: records every batch, blocks while a batch holds the blocker."""

    BLOCKER = "blocker"

    def __init__(self, fail_on: str | None = None, error_for: str | None = None):
        self.batches: list[list] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        self.fail_on = fail_on
        self.error_for = error_for

    def run_batch(self, jobs: list) -> list:
        self.batches.append(list(jobs))
        if self.BLOCKER in jobs:
            self.started.set()
            assert self.gate.wait(WAIT_S), "test never released the gate"
        if self.fail_on is not None and self.fail_on in jobs:
            raise RuntimeError(f"model crashed on {self.fail_on}")
        return [
            ValueError(f"cannot process {job}") if job == self.error_for else f"done:{job}"
            for job in jobs
        ]

    def release(self) -> None:
        self.gate.set()

    @property
    def seen(self) -> list:
        return [job for batch in self.batches for job in batch]


def make(model: Model, **kwargs) -> MicroBatcher:
    kwargs.setdefault("max_wait_s", 0.01)
    return MicroBatcher(f"test-batcher-{next(_names)}", model.run_batch, **kwargs)


@contextlib.asynccontextmanager
async def batching(model: Model, **kwargs) -> AsyncIterator[MicroBatcher]:
    """A batcher over `model`; on the way out the model's gates open and the batcher closes."""
    batcher = make(model, **kwargs)
    try:
        yield batcher
    finally:
        model.release()
        await batcher.close()


async def until(predicate, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def block(batcher: MicroBatcher, model: Model) -> asyncio.Task:
    """Submits the blocker and waits until the model is busy with it."""
    task = asyncio.create_task(batcher.submit(Model.BLOCKER))
    await asyncio.to_thread(model.started.wait, WAIT_S)
    assert model.started.is_set(), "the blocker batch never started"
    return task


async def queue(batcher: MicroBatcher, jobs, **kwargs) -> list[asyncio.Task]:
    """Submits jobs one after another (in order) and waits until all are queued."""
    before = batcher.depth
    tasks = []
    for job in jobs:
        tasks.append(asyncio.create_task(batcher.submit(job, **kwargs)))
        await asyncio.sleep(0)  # the submit runs up to its await: queued in this order
    await until(lambda: batcher.depth == before + len(tasks), "jobs to be queued")
    return tasks


async def test_jobs_submitted_together_run_in_one_batch():
    model = Model()
    async with batching(model, max_batch_size=8) as batcher:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(f"j{i}") for i in range(5))), WAIT_S
        )
        assert results == [f"done:j{i}" for i in range(5)]
        assert [len(b) for b in model.batches] == [5]


async def test_jobs_queued_while_the_model_is_busy_form_the_next_batch():
    model = Model()
    async with batching(model, max_batch_size=8) as batcher:
        blocker = await block(batcher, model)
        tasks = await queue(batcher, [f"j{i}" for i in range(5)])
        assert len(model.batches) == 1, "nothing ran while the model was busy"
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(blocker, *tasks), WAIT_S)
        assert results == ["done:blocker", *(f"done:j{i}" for i in range(5))]
        assert model.batches[1:] == [[f"j{i}" for i in range(5)]]
        assert batcher.depth == 0


async def test_max_batch_size_is_respected():
    model = Model()
    async with batching(model, max_batch_size=3) as batcher:
        blocker = await block(batcher, model)
        jobs = [f"j{i}" for i in range(7)]
        tasks = await queue(batcher, jobs)
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        await blocker
        assert results == [f"done:{j}" for j in jobs]
        assert [len(b) for b in model.batches[1:]] == [3, 3, 1]
        assert model.seen[1:] == jobs, "oldest first"
        assert all(len(b) <= 3 for b in model.batches)


async def test_jobs_with_different_keys_never_share_a_batch():
    model = Model()
    async with batching(model, max_batch_size=8, key=lambda job: job[0]) as batcher:
        blocker = await block(batcher, model)  # key "b"
        jobs = ["a1", "c1", "a2", "c2", "a3", "d1"]
        tasks = await queue(batcher, jobs)
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        await blocker
        assert results == [f"done:{j}" for j in jobs]
        for batch in model.batches:
            assert len({job[0] for job in batch}) == 1, f"mixed keys in {batch}"
        assert model.batches[1:] == [["a1", "a2", "a3"], ["c1", "c2"], ["d1"]]


async def test_high_priority_runs_before_low_priority():
    model = Model()
    async with batching(model, max_batch_size=1) as batcher:
        blocker = await block(batcher, model)
        low = await queue(batcher, ["low1", "low2"], priority=PRIORITY_LOW)
        high = await queue(batcher, ["high1", "high2"], priority=PRIORITY_HIGH)
        model.gate.set()
        await asyncio.wait_for(asyncio.gather(blocker, *low, *high), WAIT_S)
        assert model.seen == ["blocker", "high1", "high2", "low1", "low2"]


async def test_a_batch_holds_one_priority():
    model = Model()
    async with batching(model, max_batch_size=8) as batcher:
        blocker = await block(batcher, model)
        low = await queue(batcher, ["low1", "low2"], priority=PRIORITY_LOW)
        high = await queue(batcher, ["high1"], priority=PRIORITY_HIGH)
        model.gate.set()
        await asyncio.wait_for(asyncio.gather(blocker, *low, *high), WAIT_S)
        assert model.batches[1:] == [["high1"], ["low1", "low2"]]


class TwoGates(Model):
    """A model whose jobs named "wait*" block until their own gate opens."""

    def __init__(self):
        super().__init__()
        self.gates = {name: threading.Event() for name in ("wait1", "wait2")}
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def release(self) -> None:
        super().release()
        for gate in self.gates.values():
            gate.set()

    def run_batch(self, jobs: list) -> list:
        self.batches.append(list(jobs))
        with self.lock:
            self.running.update(jobs)
        for job in jobs:
            if job in self.gates:
                assert self.gates[job].wait(WAIT_S), f"test never released {job}"
        with self.lock:
            self.running.difference_update(jobs)
        return [f"done:{job}" for job in jobs]


async def running(batcher: MicroBatcher, model: TwoGates, job: str, what: str, **submit):
    """Submits `job` and waits until the model runs it (`what`, for the timeout's message)."""
    task = asyncio.create_task(batcher.submit(job, **submit))
    await until(lambda: job in model.running, what)
    return task


async def waiting(batcher: MicroBatcher, job: str, why: str, **submit) -> asyncio.Task:
    """Submits `job` and checks that it has not finished a moment later (`why`)."""
    task = asyncio.create_task(batcher.submit(job, **submit))
    await asyncio.sleep(0.05)
    assert not task.done(), why
    return task


async def finished(*tasks: asyncio.Task) -> list[str]:
    return await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)


async def release(model: TwoGates, job: str, *tasks: asyncio.Task) -> list[str]:
    """Opens `job`'s gate; the results of `tasks` once they have all finished."""
    model.gates[job].set()
    return await finished(*tasks)


@pytest.fixture
async def two_workers():
    """A TwoGates model behind a batcher of two workers, one job a batch: (model, batcher)."""
    model = TwoGates()
    async with batching(model, max_batch_size=1, workers=2) as batcher:
        yield model, batcher


async def test_workers_run_batches_side_by_side(two_workers):
    model, batcher = two_workers
    first = await running(batcher, model, "wait1", "the first batch to start")
    second = await running(batcher, model, "wait2", "a second batch beside the first")
    third = await waiting(batcher, "j3", "both workers are busy: the third job waits")
    assert await release(model, "wait2", third) == ["done:j3"]
    assert await release(model, "wait1", first, second) == ["done:wait1", "done:wait2"]


async def running_then_waiting(two_workers, first: int, second: str, priority: int, why: str):
    """Runs "wait1" at priority `first`, then submits `second` at `priority`, which must wait
    (`why`): the two tasks."""
    model, batcher = two_workers
    running_job = await running(batcher, model, "wait1", "the first batch to start", priority=first)
    return running_job, await waiting(batcher, second, why, priority=priority)


async def test_low_priority_leaves_a_worker_free_for_high_priority(two_workers):
    model, batcher = two_workers
    low, more_low = await running_then_waiting(
        two_workers,
        PRIORITY_LOW,
        "low2",
        PRIORITY_LOW,
        "a second low-priority batch would take the last worker",
    )
    high = asyncio.create_task(batcher.submit("high", priority=PRIORITY_HIGH))
    assert await finished(high) == ["done:high"]
    assert not more_low.done()
    assert await release(model, "wait1", low, more_low) == ["done:wait1", "done:low2"]


async def test_low_priority_waits_while_high_priority_runs(two_workers):
    model, _ = two_workers
    decoding = "a worker is free, but a final is decoding"
    high, low = await running_then_waiting(
        two_workers, PRIORITY_HIGH, "low", PRIORITY_LOW, decoding
    )
    assert await release(model, "wait1", high, low) == ["done:wait1", "done:low"]
    assert model.seen == ["wait1", "low"]


def _thread_nice() -> int:
    """The nice value of the calling thread (Linux)."""

    stat = open(f"/proc/self/task/{threading.get_native_id()}/stat").read()  # noqa: SIM115
    return int(stat.rsplit(")", 1)[1].split()[16])


async def test_background_batches_run_on_their_own_low_priority_threads(two_workers):
    from speechmesh.inference.cpu_priority import in_background_thread

    model, batcher = two_workers
    seen = {}
    run = model.run_batch

    def recording(jobs):
        seen[jobs[0]] = (in_background_thread(), _thread_nice())
        return run(jobs)

    batcher._run_batch = recording
    job = await running(batcher, model, "wait1", "a background batch", priority=PRIORITY_BACKGROUND)
    # Both live workers are still free: live batches start at once beside it.
    live = [asyncio.create_task(batcher.submit(f"live{i}")) for i in range(2)]
    assert await finished(*live) == ["done:live0", "done:live1"]
    assert await release(model, "wait1", job) == ["done:wait1"]
    assert seen["wait1"] == (True, 19)
    assert seen["live0"] == (False, _thread_nice())


async def test_background_waits_while_high_priority_runs(two_workers):
    model, _ = two_workers
    high, background = await running_then_waiting(
        two_workers, PRIORITY_HIGH, "bg", PRIORITY_BACKGROUND, "a final is decoding"
    )
    assert await release(model, "wait1", high, background) == ["done:wait1", "done:bg"]
    assert model.seen == ["wait1", "bg"]


async def test_full_queue_refuses_at_once_with_a_retry_delay():
    model = Model()
    async with batching(model, max_batch_size=2, max_queue=2) as batcher:
        blocker = await block(batcher, model)
        tasks = await queue(batcher, ["q1", "q2"])
        started = time.perf_counter()
        with pytest.raises(QueueFullError) as refused:
            # wait_for would raise TimeoutError instead if submit waited for room
            await asyncio.wait_for(batcher.submit("rejected"), 1.0)
        assert time.perf_counter() - started < 0.5
        assert refused.value.retry_after_s > 0
        assert "retry" in str(refused.value)
        assert batcher.depth == 2
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(blocker, *tasks), WAIT_S)
        assert results == ["done:blocker", "done:q1", "done:q2"]
        assert "rejected" not in model.seen
        # room again once the queue drained
        assert await asyncio.wait_for(batcher.submit("later"), WAIT_S) == "done:later"


async def test_cancelling_a_waiting_submit_drops_its_job():
    model = Model()
    async with batching(model, max_batch_size=8) as batcher:
        blocker = await block(batcher, model)
        keep1, dropped, keep2 = await queue(batcher, ["keep1", "dropped", "keep2"])
        dropped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dropped
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(blocker, keep1, keep2), WAIT_S)
        assert results == ["done:blocker", "done:keep1", "done:keep2"]
        assert "dropped" not in model.seen
        assert model.batches[1:] == [["keep1", "keep2"]]
        assert batcher.depth == 0


async def test_cancelled_jobs_free_their_queue_slots_at_once():
    """Callers that gave up (deadline, cancel) must not keep others out while the model is busy."""
    model = Model()
    async with batching(model, max_batch_size=8, max_queue=2) as batcher:
        blocker = await block(batcher, model)
        gone = await queue(batcher, ["gone1", "gone2"])
        for task in gone:
            task.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
        # the model is still busy with the blocker; the queue holds no live job
        try:
            fresh = asyncio.create_task(batcher.submit("fresh"))
            await asyncio.sleep(0.05)
            assert not fresh.done() or fresh.exception() is None, fresh.exception()
        finally:
            model.gate.set()
        assert await asyncio.wait_for(fresh, WAIT_S) == "done:fresh"
        await blocker
        assert "gone1" not in model.seen and "gone2" not in model.seen


async def test_an_error_returned_for_one_job_fails_only_that_job():
    model = Model(error_for="bad")
    async with batching(model, max_batch_size=8) as batcher:
        blocker = await block(batcher, model)
        good1, bad, good2 = await queue(batcher, ["good1", "bad", "good2"])
        model.gate.set()
        await asyncio.wait_for(blocker, WAIT_S)
        assert await asyncio.wait_for(good1, WAIT_S) == "done:good1"
        assert await asyncio.wait_for(good2, WAIT_S) == "done:good2"
        with pytest.raises(ValueError, match="cannot process bad"):
            await asyncio.wait_for(bad, WAIT_S)
        assert model.batches[1:] == [["good1", "bad", "good2"]], "they shared one batch"


async def test_run_batch_raising_fails_its_batch_and_the_batcher_keeps_working():
    model = Model(fail_on="boom")
    by_kind = batching(model, max_batch_size=8, key=lambda job: job.startswith("other"))
    async with by_kind as batcher:
        blocker = await block(batcher, model)
        tasks = await queue(batcher, ["x1", "boom", "x2", "other"])
        model.gate.set()
        await asyncio.wait_for(blocker, WAIT_S)
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT_S)
        for outcome in outcomes[:3]:
            assert isinstance(outcome, RuntimeError), outcomes
            assert "model crashed on boom" in str(outcome)
        assert outcomes[3] == "done:other", "a job of another batch is not affected"
        # the batcher survives: later jobs run
        again = await asyncio.wait_for(
            asyncio.gather(batcher.submit("after1"), batcher.submit("after2")), WAIT_S
        )
        assert again == ["done:after1", "done:after2"]


async def close_while_running(batcher: MicroBatcher, model: Model) -> None:
    """close() while the model runs a batch; close() waits for the worker thread, so the
    running batch is let finish a moment later."""
    opener = threading.Timer(0.2, model.gate.set)
    opener.start()
    try:
        await asyncio.wait_for(batcher.close(), WAIT_S)
    finally:
        opener.cancel()
        model.gate.set()


async def test_close_cancels_pending_jobs():
    model = Model()
    batcher = make(model, max_batch_size=8)
    blocker = await block(batcher, model)
    tasks = await queue(batcher, ["p1", "p2"])
    await close_while_running(batcher, model)
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT_S)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    assert "p1" not in model.seen and "p2" not in model.seen
    assert batcher.depth == 0
    blocker.cancel()


async def test_close_does_not_leave_the_running_batch_waiting_forever():
    """A job whose batch is running when close() is called must not hang its caller."""
    model = Model()
    batcher = make(model, max_batch_size=8)
    blocker = await block(batcher, model)
    await close_while_running(batcher, model)
    try:
        done, _ = await asyncio.wait({blocker}, timeout=2.0)
        assert done, "submit() of the job running during close() never returned"
    finally:
        blocker.cancel()


async def test_gather_all_keeps_order_and_cancels_the_rest_on_a_failure():
    assert await gather_all(asyncio.sleep(d, result=d) for d in (0.02, 0.0, 0.01)) == [
        0.02,
        0.0,
        0.01,
    ]
    assert await gather_all([]) == []
    slow = asyncio.Event()

    async def waits():
        await slow.wait()

    async def fails():
        raise ValueError("boom")

    waiting = asyncio.ensure_future(waits())
    with pytest.raises(ValueError, match="boom"):
        await gather_all([waiting, fails()])
    await asyncio.sleep(0)
    assert waiting.cancelled()
