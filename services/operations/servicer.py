"""OperationsService: google.longrunning.Operations' methods, plus raw results and uploads,
for one service's jobs. The same servicer serves speechmesh.{asr,translate,tts}.v1's
OperationsService (their methods and messages are identical; only the name prefix differs).

An operation or upload of another caller does not exist (NOT_FOUND), so ids do not leak.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import re
import time

import grpc
from google.api import httpbody_pb2
from google.longrunning import operations_pb2 as lro_pb2
from google.protobuf import empty_pb2
from google.rpc import status_pb2

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.operations import listing
from speechmesh.operations.host import Jobs
from speechmesh.operations.job import Blob
from speechmesh.operations.runner import CANCELLED_STATUS
from speechmesh.operations.store import CANCELLED, SUCCEEDED, OperationRecord
from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import start_call, timestamp

#: WaitOperation's default and longest wait; below the gateway's unary route timeout.
MAX_WAIT_S = 60.0
WAIT_POLL_S = 0.1
#: Upload chunks are written to the store in pieces of about this size.
UPLOAD_PIECE_BYTES = 1024 * 1024


class OperationsServicer:
    def __init__(self, jobs: Jobs):
        self.jobs = jobs

    # -- names -----------------------------------------------------------------------------

    def _id(self, name: str, field: str = "name") -> str:
        service = self.jobs.service
        match = re.fullmatch(r"operations/([a-z]+)/([a-z0-9]{1,64})", name)
        if match is None:
            raise errors.invalid_argument(
                field, f"{name[:80]!r} is not an operation name (operations/{service}/ID)"
            )
        if match[1] != service:
            raise errors.not_found(
                "operation", name, f"operation {name} not found: this is the {service} service"
            )
        return match[2]

    async def _get(self, name: str, context) -> OperationRecord:
        op_id = self._id(name)
        owner = self.jobs.caller(context)
        record = await asyncio.to_thread(
            self.jobs.ready_store().get, self.jobs.service, owner, op_id
        )
        if record is None:
            raise _not_found(name)
        return record

    # -- google.longrunning.Operations -----------------------------------------------------

    async def ListOperations(self, request, context):
        collection = f"operations/{self.jobs.service}"
        if request.name not in ("", collection):
            raise errors.invalid_argument("name", f"is {request.name[:80]!r}; use {collection!r}")
        states = listing.parse_filter(request.filter)
        size = listing.page_size(request.page_size)
        after = listing.parse_page_token(request.page_token, request.filter)
        owner = self.jobs.caller(context)
        records = await asyncio.to_thread(
            self.jobs.ready_store().list,
            self.jobs.service,
            owner,
            states=states,
            after=after,
            limit=size + 1,
        )
        response = lro_pb2.ListOperationsResponse(
            operations=[self.jobs.operation(r) for r in records[:size]]
        )
        if len(records) > size:
            last = records[size - 1]
            response.next_page_token = listing.page_token(last.create_time, last.id, request.filter)
        return response

    async def GetOperation(self, request, context):
        return self.jobs.operation(await self._get(request.name, context))

    async def WaitOperation(self, request, context):
        timeout = MAX_WAIT_S
        if request.HasField("timeout"):
            asked = request.timeout.ToNanoseconds() / 1e9
            if asked < 0:
                raise errors.invalid_argument("timeout", "is negative")
            timeout = min(asked, MAX_WAIT_S)
        remaining = context.time_remaining()
        if remaining is not None:  # answer before the caller's deadline, not with it
            timeout = min(timeout, max(0.0, remaining - 0.5))
        deadline = time.monotonic() + timeout
        record = await self._get(request.name, context)
        while not record.done and time.monotonic() < deadline:
            await asyncio.sleep(min(WAIT_POLL_S, max(0.0, deadline - time.monotonic())))
            record = await self._get(request.name, context)
        return self.jobs.operation(record)

    async def CancelOperation(self, request, context):
        op_id = self._id(request.name)
        record = await asyncio.to_thread(
            self.jobs.ready_store().cancel,
            self.jobs.service,
            self.jobs.caller(context),
            op_id,
            time.time(),
            CANCELLED_STATUS,
        )
        if record is None:
            raise _not_found(request.name)
        return empty_pb2.Empty()

    async def DeleteOperation(self, request, context):
        op_id = self._id(request.name)
        deleted = await asyncio.to_thread(
            self.jobs.ready_store().delete, self.jobs.service, self.jobs.caller(context), op_id
        )
        if not deleted:
            raise _not_found(request.name)
        return empty_pb2.Empty()

    # -- raw results -----------------------------------------------------------------------

    async def GetOperationResult(self, request, context):
        record = await self._get(request.name, context)
        if not record.done:
            raise errors.failed_precondition(
                f"operation {request.name} is {record.state.lower()}; wait for it to finish"
                " (WaitOperation) before fetching its result",
                "OPERATION_NOT_DONE",
            )
        if record.state != SUCCEEDED:
            raise _stored_error(record)
        kind = self.jobs.kinds.get(record.method)
        if kind is None:
            raise errors.failed_precondition(
                f"this server cannot render results of {record.method}", "UNKNOWN_METHOD"
            )
        if request.file_index < 0:
            raise errors.invalid_argument("file_index", f"is {request.file_index}; use 0 or more")
        store = self.jobs.ready_store()

        async def blob(key: str) -> Blob | None:
            found = await asyncio.to_thread(store.result_blob, record.id, key)
            return None if found is None else Blob(found[1], found[0])

        response = kind.response_type.FromString(record.response)
        content_type, data = await kind.render(response, request.format, request.file_index, blob)
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)

    # -- uploads ---------------------------------------------------------------------------

    async def UploadAudio(self, request_iterator, context):
        start_call("")
        store = self.jobs.ready_store()
        settings = self.jobs.settings
        owner = self.jobs.caller(context)
        upload_id: str | None = None
        digest = hashlib.sha256()
        size = index = 0
        piece = bytearray()
        committed = False
        try:
            async for chunk in request_iterator:
                if upload_id is None:
                    upload_id = await asyncio.to_thread(
                        store.begin_upload,
                        self.jobs.service,
                        owner,
                        chunk.content_type,
                        time.time(),
                    )
                size += len(chunk.data)
                if size > settings.upload_max_bytes:
                    raise errors.ApiError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the upload is larger than {settings.upload_max_mb} MiB, this service's"
                        " limit (SPEECHMESH_JOBS_UPLOAD_MAX_MB); nothing was kept",
                    )
                digest.update(chunk.data)
                piece += chunk.data
                if len(piece) >= UPLOAD_PIECE_BYTES:
                    await asyncio.to_thread(store.append_upload, upload_id, index, bytes(piece))
                    index += 1
                    piece.clear()
            if size == 0:
                raise errors.invalid_argument("data", "the upload is empty: send the file's bytes")
            if piece:
                await asyncio.to_thread(store.append_upload, upload_id, index, bytes(piece))
            record = await asyncio.to_thread(
                store.commit_upload,
                upload_id,
                size,
                digest.hexdigest(),
                time.time(),
                settings.upload_ttl_s,
            )
            committed = True
        finally:
            if upload_id is not None and not committed:
                await asyncio.shield(asyncio.to_thread(store.abort_upload, upload_id))
        return ops_pb2.Upload(
            name=f"uploads/{record.id}",
            size_bytes=record.size_bytes,
            content_type=record.content_type,
            sha256=record.sha256,
            create_time=timestamp(record.create_time),
            expire_time=timestamp(record.expire_time),
        )


def _grpc_module(service: str):
    """The generated gRPC module of a service's package, e.g. speechmesh.asr.v1.asr_pb2_grpc."""
    return importlib.import_module(f"speechmesh.{service}.v1.{service}_pb2_grpc")


def service_name(service: str) -> str:
    """Full name of a service's OperationsService, e.g. speechmesh.asr.v1.OperationsService."""
    return f"speechmesh.{service}.v1.OperationsService"


def register(service: str, jobs: Jobs, server: grpc.aio.Server) -> None:
    _grpc_module(service).add_OperationsServiceServicer_to_server(OperationsServicer(jobs), server)


def _not_found(name: str) -> errors.ApiError:
    return errors.not_found("operation", name, f"operation {name} not found")


def _stored_error(record: OperationRecord) -> errors.ApiError:
    if record.state == CANCELLED:
        return errors.failed_precondition(
            "the operation was cancelled; it has no result", "OPERATION_CANCELLED"
        )
    status = status_pb2.Status.FromString(record.error or b"")
    return errors.failed_precondition(
        f"the operation failed ({status.message}); it has no result", "OPERATION_FAILED"
    )
