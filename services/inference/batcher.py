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

Background batches (long-running jobs, PRIORITY_BACKGROUND) never take a live
worker: they run on `background_workers` threads of their own, at the lowest CPU
priority (speechmesh.inference.cpu_priority), and start only while no
high-priority batch runs. A live call that arrives while a background batch runs
starts at once on a live worker and gets the cores first; the background batch
goes on with what is left.

With tracing on (speechmesh.runtime.tracing), a job carries its submitter's trace context and
queue time, and each job of a batch gets a span `batch <model>` under its request's span, from
queueing to the end of the forward pass, with the batch's size, id and queue waits and links to
the batch's other requests; the worker thread runs the batch in the first job's span. Off, a job
carries nothing (one `is None` test per job and per batch).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from speechmesh.inference import cpu_priority
from speechmesh.runtime import metrics, tracing

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
    queued_at: float = field(compare=False, default=0.0)  # loop time
    #: (trace context, queued at in ns) while tracing is on (tracing.capture), else None.
    trace: Any = field(compare=False, default=None)


#: How long a background batch waits for as many jobs as a batch holds, seconds.
BACKGROUND_FILL_S = 0.1

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
        background_workers: int | None = None,
        traced: bool = True,
    ):
        """`traced`: whether jobs get batch spans when tracing is on (off for per-frame work
        such as the streams' VAD steps, whose spans would drown a trace)."""
        self.name = name
        self.traced = traced
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
        #: Threads for background batches (default: as many as live workers).
        self.background_workers = workers if background_workers is None else background_workers
        self._background_executor = ThreadPoolExecutor(
            max(1, self.background_workers),
            thread_name_prefix=f"batch-{name}-bg",
            initializer=cpu_priority.enter_background_thread,
        )
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        entry = _Entry(priority, next(self._seq), job, self._key(job), future, loop.time())
        if tracing.TRACER is not None and self.traced:
            entry.trace = tracing.capture()
        self._pending.append(entry)
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
        # Waits for batches still on worker threads, without blocking the event loop.
        for executor in (self._executor, self._background_executor):
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._drop_cancelled()
            started = True
            while started:
                started = await self._start_live(loop) | self._start_background(loop)

    async def _start_live(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Starts the next live batch on a free live worker, if any; whether it did."""
        live = [e for e in self._pending if e.priority < PRIORITY_BACKGROUND]
        if not live or self._live_running() >= self.workers:
            return False
        if self._reserved_for_high_priority(min(live).priority):
            return False
        if not self._live_running():
            await self._fill(loop)
        batch = self._take(background_batch=False)
        if not batch:
            return False
        self._start(loop, batch, self._executor)
        return True

    def _start_background(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Starts the next background batch on a free background worker, unless a
        high-priority batch runs; whether it did."""
        if self.background_workers < 1 or not any(
            e.priority >= PRIORITY_BACKGROUND for e in self._pending
        ):
            return False
        running = [b[0].priority for b in self._running.values() if b]
        if sum(p >= PRIORITY_BACKGROUND for p in running) >= self.background_workers:
            return False
        if any(p <= PRIORITY_HIGH for p in running):
            return False  # it starts when the live batch is done (`_run` wakes the loop)
        waiting = [e for e in self._pending if e.priority >= PRIORITY_BACKGROUND]
        if len(waiting) < self.max_batch_size:
            # Jobs feed windows as their files decode: a short wait fills the batch (nobody
            # waits on a job's window but the job).
            ready_at = min(e.queued_at for e in waiting) + BACKGROUND_FILL_S
            if loop.time() < ready_at:
                loop.call_at(ready_at, self._wakeup.set)
                return False
        batch = self._take(background_batch=True)
        if not batch:
            return False
        self._start(loop, batch, self._background_executor)
        return True

    def _start(self, loop, batch: list[_Entry], executor: ThreadPoolExecutor) -> None:
        number = next(self._batch_ids)
        self._running[number] = batch
        task = loop.create_task(self._run(loop, number, batch, executor))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)

    def _live_running(self) -> int:
        return sum(1 for b in self._running.values() if b and b[0].priority < PRIORITY_BACKGROUND)

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        number: int,
        batch: list[_Entry],
        executor: ThreadPoolExecutor,
    ):
        """One batch on a worker thread; its results go to its callers."""
        started = time.perf_counter()
        run_batch, spans = self._run_batch, []
        if tracing.TRACER is not None and self.traced:
            spans = tracing.batch_spans(
                self.name, f"{self.name}#{number}", [e.trace for e in batch], batch[0].priority
            )
            run_batch = tracing.in_span(run_batch, spans)
        try:
            results = await loop.run_in_executor(executor, run_batch, [e.job for e in batch])
        except Exception as error:  # the whole batch failed: every job sees why
            results = [error] * len(batch)
        except BaseException as error:  # cancelled (the batcher closes)
            tracing.end_batch_spans(spans, [error] * len(batch))
            raise
        finally:
            self._running.pop(number, None)
            self._wakeup.set()
        if spans:
            tracing.end_batch_spans(spans, results)
        seconds = time.perf_counter() - started
        self._durations.observe(seconds)
        self._sizes.observe(len(batch))
        if batch[0].priority < PRIORITY_BACKGROUND:  # what live callers can expect
            self._last_batch_s = seconds
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

    def _reserved_for_high_priority(self, priority: int) -> bool:
        """Whether the next live batch, being of low `priority` (interim hypotheses), must
        wait: it never takes the last free live worker (a high-priority job arriving meanwhile
        starts at once), nor starts while a high-priority batch runs (the workers share the
        cores: a final decodes faster with no interim hypothesis beside it)."""
        if priority <= PRIORITY_HIGH:
            return False
        high_running = any(
            batch[0].priority <= PRIORITY_HIGH for batch in self._running.values() if batch
        )
        return high_running or (self.workers > 1 and self._live_running() >= self.workers - 1)

    def _drop_cancelled(self) -> None:
        self._pending = [e for e in self._pending if not e.future.done()]
        self._depth.set(len(self._pending))

    def _take(self, *, background_batch: bool) -> list[_Entry]:
        """The next batch of live jobs, or of background ones."""
        self._drop_cancelled()
        ordered = sorted(
            e for e in self._pending if (e.priority >= PRIORITY_BACKGROUND) == background_batch
        )
        if not ordered:
            return []
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
