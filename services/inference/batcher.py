"""A micro-batcher: one per loaded model.

Every unary call and every decode step of every open stream submits a job
here. One background task forms batches (up to `max_batch_size` jobs with the
same key, high priority first, then oldest) and runs them on `workers`
dedicated threads, off the event loop: one on a GPU, where a bigger batch is the
gain; two on a CPU engine whose runtime takes batches side by side (two narrow
batches beat one wide one there). A batch holds jobs of one priority;
low-priority batches leave one worker free for high-priority ones and wait while
a high-priority batch runs. While every
worker is busy, new jobs queue up and form the next batch; when the model is
idle, the first job waits at most `max_wait_s` for as many jobs as the last
batch had (see `_fill`). A full queue refuses at once (QueueFullError) rather
than letting latency or memory grow without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from speechmesh.runtime import metrics

J = TypeVar("J")
R = TypeVar("R")

#: Priorities: lower runs first. HIGH: unary calls and stream finals; LOW: interim hypotheses;
#: BACKGROUND: long-running jobs (speechmesh.operations), which only use what the others leave.
PRIORITY_HIGH = 0
PRIORITY_LOW = 1
PRIORITY_BACKGROUND = 2


class QueueFullError(Exception):
    """The batcher's queue is full; retry after `retry_after_s`."""

    def __init__(self, model: str, depth: int, retry_after_s: float):
        super().__init__(
            f"model {model} is at capacity ({depth} jobs queued); retry after "
            f"{max(retry_after_s, 0.001) * 1000:.0f} ms or add replicas"
        )
        self.retry_after_s = retry_after_s


@dataclass(order=True)
class _Entry:
    priority: int
    seq: int
    job: Any = field(compare=False)
    key: Hashable = field(compare=False)
    future: asyncio.Future = field(compare=False)


#: The defaults of every batcher, and of the services' max_batch_* / max_queue settings.
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_MAX_WAIT_MS = 20.0
DEFAULT_MAX_QUEUE = 256


class MicroBatcher(Generic[J, R]):
    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[J]], Sequence[R | BaseException]],
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_s: float = DEFAULT_MAX_WAIT_MS / 1000,
        max_queue: int = DEFAULT_MAX_QUEUE,
        key: Callable[[J], Hashable] = lambda job: None,
        workers: int = 1,
    ):
        self.name = name
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._key = key
        self._pending: list[_Entry] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"batch-{name}")
        self._loop_task: asyncio.Task | None = None
        self._running: dict[int, list[_Entry]] = {}  # the batches on worker threads now
        self._batch_ids = itertools.count()
        self._batch_tasks: set[asyncio.Task] = set()
        self._last_batch_s = 0.1
        self._last_batch_size = 1
        self._depth = metrics.QUEUE_DEPTH.labels(name)
        self._sizes = metrics.BATCH_SIZE.labels(name)
        self._durations = metrics.BATCH_SECONDS.labels(name)

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def submit(self, job: J, *, priority: int = PRIORITY_HIGH) -> R:
        """Queues a job and waits for its result; cancelling the wait drops the job."""
        self._drop_cancelled()  # callers that went away free their slots at once
        if len(self._pending) >= self.max_queue:
            metrics.REJECTED.labels(self.name).inc()
            batches_ahead = len(self._pending) / (self.max_batch_size * self.workers)
            raise QueueFullError(self.name, len(self._pending), batches_ahead * self._last_batch_s)
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(priority, next(self._seq), job, self._key(job), future))
        self._depth.set(len(self._pending))
        self._wakeup.set()
        return await future

    async def run_direct(self, jobs: list[J]) -> Sequence[R | BaseException]:
        """Runs one batch on the model's worker thread, bypassing the queue (benchmarks)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._run_batch, jobs
        )

    async def close(self) -> None:
        """Stops the batcher: queued jobs and the batch on the worker thread are cancelled."""
        waiting = [*self._pending, *(e for batch in self._running.values() for e in batch)]
        tasks = [t for t in (self._loop_task, *self._batch_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for entry in waiting:
            entry.future.cancel()
        self._pending.clear()
        # Waits for a batch still on the worker thread, without blocking the event loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._drop_cancelled()
            while self._pending and len(self._running) < self.workers:
                if self._reserved_for_high_priority():
                    break
                if not self._running:
                    await self._fill(loop)
                batch = self._take()
                if not batch:
                    break
                number = next(self._batch_ids)
                self._running[number] = batch
                task = loop.create_task(self._run(loop, number, batch))
                self._batch_tasks.add(task)
                task.add_done_callback(self._batch_tasks.discard)

    async def _run(self, loop: asyncio.AbstractEventLoop, number: int, batch: list[_Entry]):
        """One batch on a worker thread; its results go to its callers."""
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._executor, self._run_batch, [e.job for e in batch]
            )
        except Exception as error:  # the whole batch failed: every job sees why
            results = [error] * len(batch)
        finally:
            self._running.pop(number, None)
            self._wakeup.set()
        self._last_batch_s = time.perf_counter() - started
        self._durations.observe(self._last_batch_s)
        self._sizes.observe(len(batch))
        self._last_batch_size = len(batch)
        for entry, result in zip(batch, results, strict=True):
            if entry.future.done():
                continue
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """While the model idles, wait up to max_wait_s for as many jobs as the last batch had.

        Jobs tend to come back together: clients whose answers left in one batch send their
        next requests within milliseconds of each other. Expecting the last batch's size
        refills full batches under load, and costs a lone client no wait at all.
        """
        expected = min(self.max_batch_size, self._last_batch_size)
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < expected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return
            self._wakeup.clear()

    def _reserved_for_high_priority(self) -> bool:
        """Whether the next batch, being low priority, must wait: it never takes the last
        free worker (a high-priority job arriving meanwhile starts at once), nor starts while
        a high-priority batch runs (the workers share the cores: a final decodes faster with
        no interim hypothesis beside it)."""
        if min(self._pending).priority <= PRIORITY_HIGH:
            return False
        high_running = any(
            batch[0].priority <= PRIORITY_HIGH for batch in self._running.values() if batch
        )
        return high_running or (self.workers > 1 and len(self._running) >= self.workers - 1)

    def _drop_cancelled(self) -> None:
        self._pending = [e for e in self._pending if not e.future.done()]
        self._depth.set(len(self._pending))

    def _take(self) -> list[_Entry]:
        self._drop_cancelled()
        if not self._pending:
            return []
        ordered = sorted(self._pending)
        key, priority = ordered[0].key, ordered[0].priority
        # One priority a batch: low-priority jobs never slow down a batch of high ones.
        batch = [e for e in ordered if e.key == key and e.priority == priority]
        batch = batch[: self.max_batch_size]
        taken = {id(e) for e in batch}
        self._pending = [e for e in self._pending if id(e) not in taken]
        self._depth.set(len(self._pending))
        return batch


async def gather_all(awaitables: Iterable[Awaitable[R]]) -> list[R]:
    """The results of jobs submitted together, in order. Like asyncio.gather, but the first
    failure cancels the others (their queued jobs leave the batcher) and is raised as it is."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
