"""speechmesh.inference.background: a long-running job's work takes a bounded share of a
batcher's queue and waits out a full queue instead of failing; live work is submitted as is."""

from __future__ import annotations

import asyncio
import threading

import pytest

from speechmesh.inference import background
from speechmesh.inference.batcher import (
    PRIORITY_BACKGROUND,
    PRIORITY_HIGH,
    MicroBatcher,
    QueueFullError,
)


class Gate:
    """A model whose batches wait until the test opens the gate."""

    def __init__(self):
        self.open = threading.Event()
        self.batches: list[list[str]] = []

    def run_batch(self, jobs: list[str]) -> list[str]:
        assert self.open.wait(5.0), "the test never opened the gate"
        self.batches.append(list(jobs))
        return [f"done:{job}" for job in jobs]


async def test_background_jobs_hold_a_bounded_share_and_wait_out_a_full_queue():
    model = Gate()
    batcher = MicroBatcher("unit-background", model.run_batch, max_batch_size=2, max_queue=8)
    slots = background.background_slots(batcher)
    assert slots == 4  # twice a batch for the one worker, within half the queue
    try:
        jobs = [
            asyncio.ensure_future(background.submit(batcher, f"b{i}", PRIORITY_BACKGROUND))
            for i in range(20)
        ]
        await asyncio.sleep(0.1)
        # The rest wait for a slot outside the queue: live calls still find room.
        assert batcher.depth + sum(len(b) for b in model.batches) <= slots
        live = [
            asyncio.ensure_future(batcher.submit(f"live{i}", priority=PRIORITY_HIGH))
            for i in range(4)
        ]
        await asyncio.sleep(0.05)
        model.open.set()
        assert await asyncio.gather(*jobs) == [f"done:b{i}" for i in range(20)]
        assert await asyncio.gather(*live) == [f"done:live{i}" for i in range(4)]
    finally:
        model.open.set()
        await batcher.close()


async def test_a_full_queue_refuses_live_work_and_holds_back_background_work():
    model = Gate()
    batcher = MicroBatcher("unit-background-full", model.run_batch, max_batch_size=1, max_queue=3)
    try:
        live = [asyncio.ensure_future(batcher.submit("live0", priority=PRIORITY_HIGH))]
        await asyncio.sleep(0.1)  # running
        live += [
            asyncio.ensure_future(batcher.submit(f"live{i}", priority=PRIORITY_HIGH))
            for i in range(1, 4)  # queued: the queue is full
        ]
        await asyncio.sleep(0.05)
        assert batcher.depth == 3
        with pytest.raises(QueueFullError):
            await background.submit(batcher, "refused", PRIORITY_HIGH)
        waiting = asyncio.ensure_future(background.submit(batcher, "job", PRIORITY_BACKGROUND))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # waits rather than fails
        model.open.set()
        assert await waiting == "done:job"
        await asyncio.gather(*live)
    finally:
        model.open.set()
        await batcher.close()
