"""The worker side of jobs: claims operations of one service from the store, runs them, keeps
their leases, stops them when cancelled, and writes each result once.

Up to `concurrency` jobs run at once per replica. A job runs its kind's `run` at the batcher's
lowest priority (PRIORITY_BACKGROUND), so live calls and streams never queue behind it. While
it runs, a heartbeat every `heartbeat_s` renews its lease, writes its progress and reads its
cancel flag (a cancel takes effect within one heartbeat). A worker that loses its lease (it
stalled past the lease, or the operation was deleted) abandons the job and writes nothing.
Another task deletes what retention says is old, every few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

import grpc
import structlog

from speechmesh.inference.batcher import PRIORITY_BACKGROUND, QueueFullError
from speechmesh.operations.inputs import Inputs
from speechmesh.operations.job import JobKind
from speechmesh.operations.settings import JobsSettings
from speechmesh.operations.store import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    Claim,
    JobStore,
    LeaseLostError,
    Progress,
)
from speechmesh.runtime import errors, metrics
from speechmesh.runtime.interceptor import as_api_error

log = structlog.get_logger("speechmesh.jobs")

CLEANUP_INTERVAL_S = 300.0
#: A WRITING upload this old was abandoned (its replica died mid-upload).
ABANDONED_UPLOAD_S = 6 * 3600.0


def status_bytes(code: grpc.StatusCode, message: str) -> bytes:
    """A serialized google.rpc.Status, as the store keeps a job's error."""
    return errors.ApiError(code, message).to_proto().SerializeToString()


CANCELLED_STATUS = status_bytes(grpc.StatusCode.CANCELLED, "cancelled by CancelOperation")


@dataclass
class _Context:
    """A running job's view of the runner (speechmesh.operations.job.JobContext)."""

    owner: str
    inputs: Inputs
    priority: int = PRIORITY_BACKGROUND
    progress: Progress = field(default_factory=Progress)

    async def read(self, source):
        return await self.inputs.read(source, self.owner)


class JobRunner:
    def __init__(
        self,
        service: str,
        store: JobStore,
        kinds: dict[str, JobKind],
        inputs: Inputs,
        settings: JobsSettings,
    ):
        self.service = service
        self.store = store
        self.kinds = kinds
        self.inputs = inputs
        self.settings = settings
        #: This worker's name in leases and events: host, process and a random suffix.
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.heartbeat_s = min(settings.lease_s / 3, 0.5)
        self._wakeup = asyncio.Event()
        self._running: dict[str, asyncio.Task] = {}
        self._tasks: list[asyncio.Task] = []
        #: Mean seconds a job takes here (moving average), for a full queue's RetryInfo.
        self.mean_job_s: float | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.settings.concurrency > 0:
            self._tasks.append(loop.create_task(self._claim_loop()))
        self._tasks.append(loop.create_task(self._cleanup_loop()))

    def wake(self) -> None:
        """A job was just created here: look for work now rather than at the next poll."""
        self._wakeup.set()

    async def close(self) -> None:
        """Stops claiming and abandons running jobs: their leases lapse and another replica
        (or this one restarted) runs them again from the start."""
        tasks = [*self._tasks, *self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._running.clear()

    # -- claiming --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            try:
                while len(self._running) < self.settings.concurrency:
                    claim = await asyncio.to_thread(
                        self.store.claim,
                        self.service,
                        self.worker,
                        self.settings.lease_s,
                        time.time(),
                    )
                    if claim is None:
                        break
                    op_id = claim.operation.id
                    task = asyncio.create_task(self._run(claim))
                    self._running[op_id] = task
                    task.add_done_callback(lambda _, op_id=op_id: self._finished(op_id))
            except Exception as error:  # the database is unreachable: log, retry at the next poll
                log.error("jobs.claim_failed", service=self.service, error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.settings.poll_interval_s)
            self._wakeup.clear()

    def _finished(self, op_id: str) -> None:
        self._running.pop(op_id, None)
        self._wakeup.set()

    # -- one job ---------------------------------------------------------------------------

    async def _run(self, claim: Claim) -> None:
        op = claim.operation
        kind = self.kinds.get(op.method)
        started = time.perf_counter()
        log.info("jobs.started", operation=op.id, method=op.method, attempt=op.attempt)
        if kind is None:  # written by a newer version of the service: leave it to that one
            await self._finish(
                claim,
                FAILED,
                error=status_bytes(
                    grpc.StatusCode.UNIMPLEMENTED, f"this server cannot run {op.method} jobs"
                ),
            )
            return
        context = _Context(op.owner, self.inputs)
        context.progress.total_items = op.total_items
        request = kind.request_type.FromString(op.request)
        work = asyncio.create_task(kind.run(request, context))
        cancelled = False
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=self.heartbeat_s)
                if work.done():
                    break
                cancelled = await asyncio.to_thread(
                    self.store.heartbeat,
                    op.id,
                    claim.token,
                    self.settings.lease_s,
                    time.time(),
                    context.progress,
                )
                if cancelled:
                    work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
        except LeaseLostError:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            log.warning("jobs.lease_lost", operation=op.id, worker=self.worker)
            return
        except asyncio.CancelledError:  # the runner is closing
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise
        except Exception as error:  # the database failed under us: the lease will lapse
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            log.error("jobs.heartbeat_failed", operation=op.id, error=str(error))
            return
        if cancelled:
            await self._finish(claim, CANCELLED, error=CANCELLED_STATUS, progress=context.progress)
        elif work.exception() is not None:
            await self._finish(claim, FAILED, error=_failure(work.exception(), op.id))
        else:
            outcome = work.result()
            progress = context.progress
            progress.percent = 100.0
            progress.processed_items = progress.total_items
            blobs = {key: (b.content_type, b.data) for key, b in outcome.blobs.items()}
            await self._finish(
                claim,
                SUCCEEDED,
                response=outcome.response.SerializeToString(),
                blobs=blobs,
                progress=progress,
            )
        seconds = time.perf_counter() - started
        metrics.JOB_SECONDS.labels(self.service, op.method).observe(seconds)
        self.mean_job_s = (
            seconds if self.mean_job_s is None else 0.8 * self.mean_job_s + 0.2 * seconds
        )
        log.info("jobs.finished", operation=op.id, method=op.method, seconds=round(seconds, 3))

    async def _finish(self, claim: Claim, state: str, **fields) -> None:
        try:
            written = await asyncio.to_thread(
                self.store.finish,
                claim.operation.id,
                claim.token,
                state=state,
                now=time.time(),
                **fields,
            )
        except Exception as error:
            log.error("jobs.finish_failed", operation=claim.operation.id, error=str(error))
            return
        if written:
            metrics.JOBS_FINISHED.labels(self.service, claim.operation.method, state).inc()
        else:
            log.warning("jobs.lease_lost", operation=claim.operation.id, worker=self.worker)

    # -- retention -------------------------------------------------------------------------

    async def _cleanup_loop(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(
                    self.store.cleanup, time.time(), self.settings.retention_s, ABANDONED_UPLOAD_S
                )
                if any(removed.values()):
                    log.info("jobs.cleanup", service=self.service, **removed)
            except Exception as error:
                log.error("jobs.cleanup_failed", service=self.service, error=str(error))
            await asyncio.sleep(CLEANUP_INTERVAL_S)


def _failure(error: BaseException, op_id: str) -> bytes:
    """A failed job's google.rpc.Status: the caller's mistake as it is, anything else as
    INTERNAL without internals (logged here)."""
    api_error = as_api_error(error) if isinstance(error, Exception) else None
    if isinstance(error, QueueFullError):
        api_error = None  # the batcher was full: an internal condition for a job
    if api_error is not None:
        return api_error.to_proto().SerializeToString()
    log.error("jobs.failed", operation=op_id, error=repr(error))
    return status_bytes(grpc.StatusCode.INTERNAL, "the job failed; the service's log has details")
