"""The jobs of one service: its store, inputs, kinds and runner, and how a service's
servicer starts a job (`submit`) and shows it (`operation`).

A service builds one `Jobs` with its kinds (e.g. BatchRecognize), starts it after its models
are loaded (the runner only claims work it can run) and closes it before releasing them.
"""

from __future__ import annotations

import asyncio
import time

from google.longrunning import operations_pb2 as lro_pb2
from google.protobuf.message import Message

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.operations.inputs import Inputs
from speechmesh.operations.job import JobKind
from speechmesh.operations.runner import JobRunner
from speechmesh.operations.settings import JobsSettings
from speechmesh.operations.store import SUCCEEDED, JobStore, OperationRecord, QueueFullError
from speechmesh.runtime import errors
from speechmesh.runtime.identity import IdentityPolicy
from speechmesh.runtime.proto_mapping import duration, timestamp

#: RetryInfo of a full queue when no job has finished yet to estimate from.
DEFAULT_RETRY_S = 30.0


class Jobs:
    def __init__(
        self,
        service: str,
        kinds: list[JobKind],
        settings: JobsSettings,
        identity: IdentityPolicy,
    ):
        self.service = service
        self.settings = settings
        self.identity = identity
        self.kinds = {kind.method: kind for kind in kinds}
        self.store: JobStore | None = None
        self.inputs: Inputs | None = None
        self.runner: JobRunner | None = None

    @classmethod
    def for_service(cls, service: str, kinds: list[JobKind], settings) -> Jobs:
        """The jobs of a service with its ServiceSettings (their `jobs` and identity)."""
        return cls(service, kinds, settings.jobs, IdentityPolicy.from_settings(settings))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Opens the store (creating its tables) and starts the runner."""
        self.store = await asyncio.to_thread(JobStore.open, self.settings.database_url)
        self.inputs = Inputs(self.store, self.service, self.settings)
        self.runner = JobRunner(self.service, self.store, self.kinds, self.inputs, self.settings)
        self.runner.start()

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    def ready_store(self) -> JobStore:
        if self.store is None:
            raise errors.unavailable(
                f"the {self.service} service is starting; retry shortly", 1.0, "STARTING"
            )
        return self.store

    # -- requests --------------------------------------------------------------------------

    def caller(self, context) -> str:
        return self.identity.caller(context.invocation_metadata())

    async def submit(self, method: str, request: Message, context) -> lro_pb2.Operation:
        """Starts a job of `method` for the caller: checks the request and its inputs, stores
        it (RESOURCE_EXHAUSTED past the queue limit) and answers with the operation."""
        kind = self.kinds[method]
        owner = self.caller(context)
        store = self.ready_store()
        total = await kind.validate(request, owner)
        uploads = await self.inputs.check(kind.inputs(request), owner, "files")
        try:
            record = await asyncio.to_thread(
                store.create,
                service=self.service,
                owner=owner,
                method=method,
                request=request.SerializeToString(),
                request_id=getattr(request, "request_id", ""),
                total_items=total,
                uploads=uploads,
                max_queued=self.settings.max_queued,
                now=time.time(),
            )
        except QueueFullError as error:
            raise errors.resource_exhausted(
                f"the {self.service} job queue is full ({error.queued} jobs queued or running,"
                f" the limit is {error.limit}); retry later or add replicas",
                self._retry_after(error.queued),
            ) from None
        self.runner.wake()
        return self.operation(record)

    def _retry_after(self, queued: int) -> float:
        """About when a place in the queue frees: a job's mean duration on this replica over
        the jobs it runs at once."""
        mean = self.runner.mean_job_s if self.runner is not None else None
        if mean is None:
            return DEFAULT_RETRY_S
        return max(1.0, min(3600.0, mean / max(1, self.settings.concurrency)))

    def operation_name(self, operation_id: str) -> str:
        return f"operations/{self.service}/{operation_id}"

    def operation(self, record: OperationRecord) -> lro_pb2.Operation:
        """The google.longrunning.Operation of a stored operation."""
        op = lro_pb2.Operation(name=self.operation_name(record.id), done=record.done)
        op.metadata.Pack(self.metadata(record))
        kind = self.kinds.get(record.method)
        if record.state == SUCCEEDED and record.response is not None and kind is not None:
            op.response.type_url = f"type.googleapis.com/{kind.response_type.DESCRIPTOR.full_name}"
            op.response.value = record.response
        elif record.done and record.error is not None:
            op.error.ParseFromString(record.error)
        return op

    def metadata(self, record: OperationRecord) -> ops_pb2.OperationMetadata:
        meta = ops_pb2.OperationMetadata(
            state=ops_pb2.OperationState.Value(f"OPERATION_STATE_{record.state}"),
            progress_percent=record.progress_percent,
            processed_audio=duration(record.processed_audio_s),
            processed_items=record.processed_items,
            total_items=record.total_items,
            create_time=timestamp(record.create_time),
            update_time=timestamp(record.update_time),
            attempt=record.attempt,
            cancel_requested=record.cancel_requested,
            method=record.method,
            request_id=record.request_id,
        )
        if record.total_audio_s is not None:
            meta.total_audio.CopyFrom(duration(record.total_audio_s))
        if record.start_time is not None:
            meta.start_time.CopyFrom(timestamp(record.start_time))
        if record.end_time is not None:
            meta.end_time.CopyFrom(timestamp(record.end_time))
            meta.expire_time.CopyFrom(timestamp(record.end_time + self.settings.retention_s))
        return meta
