"""Submitting work to a model's batcher at any priority, with the rules background work needs.

Live work (PRIORITY_HIGH, PRIORITY_LOW) goes to the batcher as it is: a full queue refuses at
once (QueueFullError, RESOURCE_EXHAUSTED for the caller). A long-running job
(PRIORITY_BACKGROUND) can hold thousands of windows or sentences; submitted at once they would
fill the queue (or overflow it), and live calls would be refused behind them. So background work
keeps at most `background_slots` jobs queued or running per batcher, shared by every job of the
replica (enough for the next batch of every worker, twice over, so batches stay full), and a
full queue makes it wait and try again rather than fail.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TypeVar

from speechmesh.inference.batcher import PRIORITY_BACKGROUND, MicroBatcher, QueueFullError

J = TypeVar("J")
R = TypeVar("R")

#: The longest a background job waits before trying a full queue again, seconds.
MAX_RETRY_S = 1.0


_SLOTS: weakref.WeakKeyDictionary[MicroBatcher, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def background_slots(batcher: MicroBatcher) -> int:
    """How many background jobs may be queued or running on `batcher` at once."""
    return max(1, min(2 * batcher.max_batch_size * batcher.workers, batcher.max_queue // 2))


async def submit(batcher: MicroBatcher[J, R], job: J, priority: int) -> R:
    """`batcher.submit(job, priority=priority)`, for background priorities within the
    background slots and waiting out a full queue."""
    if priority < PRIORITY_BACKGROUND:
        return await batcher.submit(job, priority=priority)
    slots = _SLOTS.get(batcher)
    if slots is None:
        slots = _SLOTS[batcher] = asyncio.Semaphore(background_slots(batcher))
    async with slots:
        while True:
            try:
                return await batcher.submit(job, priority=priority)
            except QueueFullError as error:
                await asyncio.sleep(min(max(error.retry_after_s, 0.01), MAX_RETRY_S))
