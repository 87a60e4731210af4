"""Checks every bad-input test shares: the code, a message that says what to fix, and the
google.rpc.Status details (the BadRequest field violation, the ResourceInfo) in the trailers."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status


def details(error: grpc.aio.AioRpcError, kind):
    """The status details of one message type (e.g. error_details_pb2.BadRequest), unpacked."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def check_status(
    error: grpc.aio.AioRpcError,
    code: grpc.StatusCode,
    mention: str,
    field: str = "",
    resource_type: str | None = None,
    label: str = "",
) -> None:
    """`error` has `code`, a message mentioning `mention` (case-insensitive) that the Status
    repeats; INVALID_ARGUMENT names exactly `field`; NOT_FOUND carries one ResourceInfo (of
    `resource_type` when given)."""
    assert error.code() == code, f"{label}: {error.code()} {error.details()}"
    message = error.details() or ""
    assert message.strip(), f"{label}: empty message"
    assert mention.lower() in message.lower(), f"{label}: {message!r}"
    assert rpc_status.from_call(error).message == message
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = [
            v for bad in details(error, error_details_pb2.BadRequest) for v in bad.field_violations
        ]
        assert [v.field for v in violations] == [field], f"{label}: {violations}"
        assert violations[0].description.strip()
    if code == grpc.StatusCode.NOT_FOUND:
        infos = details(error, error_details_pb2.ResourceInfo)
        assert len(infos) == 1, f"{label}: {infos}"
        if resource_type is not None:
            assert infos[0].resource_type == resource_type, f"{label}: {infos[0]}"


@dataclasses.dataclass
class MethodCase:
    """A bad request to one unary RPC and the error it must get."""

    id: str
    code: grpc.StatusCode
    #: What the message must mention (case-insensitive).
    mention: str
    #: The BadRequest field violation's field (INVALID_ARGUMENT only).
    field: str
    #: Which RPC, and the request's fields.
    method: str
    request: dict = dataclasses.field(default_factory=dict)


async def stream_refused(
    method, messages, timeout: float, keep_open_s: float = 0
) -> grpc.aio.AioRpcError:
    """The error a stream-request RPC (`method`, a stub's) ends with after `messages`; fails the
    test if it ends without one. With `keep_open_s`, the stream stays open that long after the
    messages instead of half-closing: the server must end the call itself."""

    async def gen():
        for message in messages:
            yield message
        if keep_open_s:
            await asyncio.sleep(keep_open_s)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in method(gen(), timeout=timeout):
            pass
    return raised.value


async def check_serving(channel: grpc.aio.Channel, *services: str) -> None:
    """The server's health service answers SERVING for each of `services` ("" is the server)."""
    health = health_pb2_grpc.HealthStub(channel)
    for service in services:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
