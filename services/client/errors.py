"""Typed exceptions for failed calls, built from the gRPC status and its google.rpc details.

Every error a client method raises is a SpeechmeshError (or a subclass per gRPC code), carrying
what the service attached: BadRequest field violations, RetryInfo's delay, ErrorInfo's reason,
ResourceInfo's resource. The original grpc.RpcError stays reachable as `__cause__` and `.rpc`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ResourceInfo",
    "SpeechmeshError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_rpc_error",
    "from_status",
]


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """A bad request field (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


@dataclasses.dataclass(frozen=True)
class ResourceInfo:
    """The resource an error is about (google.rpc.ResourceInfo), e.g. a voice not found."""

    resource_type: str
    resource_name: str
    description: str


class SpeechmeshError(Exception):
    """A call that failed: the gRPC code, the service's message and its details.

    Attributes:
        code: the grpc.StatusCode.
        message: the service's message (what went wrong and, usually, what to do).
        field_violations: BadRequest field violations, naming request fields.
        retry_after: seconds to wait before retrying (RetryInfo), or None.
        reason: ErrorInfo's machine-readable reason ("" when none).
        resource: ResourceInfo of NOT_FOUND / ALREADY_EXISTS errors, or None.
        status: the whole google.rpc.Status, or None when the server attached none.
        rpc: the grpc.RpcError this was built from, or None.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init_subclass__(cls, code: grpc.StatusCode | None = None, **kwargs):
        """`class NotFound(SpeechmeshError, code=grpc.StatusCode.NOT_FOUND)`: the class of
        the errors with that code (what `from_rpc_error` raises for it)."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
            _BY_CODE[code] = cls

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        field_violations: list[FieldViolation] | None = None,
        retry_after: float | None = None,
        reason: str = "",
        resource: ResourceInfo | None = None,
        status: status_pb2.Status | None = None,
        rpc: grpc.RpcError | None = None,
    ):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.field_violations = field_violations or []
        self.retry_after = retry_after
        self.reason = reason
        self.resource = resource
        self.status = status
        self.rpc = rpc

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r})"

    @property
    def fields(self) -> list[str]:
        """The names of the request fields that were wrong."""
        return [violation.field for violation in self.field_violations]


#: The error class of each gRPC code that has one (filled as the classes below are made).
_BY_CODE: dict[grpc.StatusCode, type[SpeechmeshError]] = {}


class Cancelled(SpeechmeshError, code=grpc.StatusCode.CANCELLED):
    """The call was cancelled before it finished."""


class InvalidArgument(SpeechmeshError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """A request field is wrong; `field_violations` say which and why."""


class DeadlineExceeded(SpeechmeshError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The call's deadline (`timeout=`) passed before it finished."""


class NotFound(SpeechmeshError, code=grpc.StatusCode.NOT_FOUND):
    """An unknown model or voice; `resource` names it."""


class AlreadyExists(SpeechmeshError, code=grpc.StatusCode.ALREADY_EXISTS):
    """A resource of that name exists already (e.g. a stored voice); `resource` names it."""


class PermissionDenied(SpeechmeshError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The credentials are known but do not allow this call."""


class ResourceExhausted(SpeechmeshError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """The service's queue or the gateway's rate limit is full; wait `retry_after` seconds."""


class FailedPrecondition(SpeechmeshError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The request cannot be served in the service's present state (e.g. a model that did
    not load)."""


class Unimplemented(SpeechmeshError, code=grpc.StatusCode.UNIMPLEMENTED):
    """The target does not serve this method (e.g. one service's port asked for another)."""


class Internal(SpeechmeshError, code=grpc.StatusCode.INTERNAL):
    """A fault in the service, not in the request."""


class Unavailable(SpeechmeshError, code=grpc.StatusCode.UNAVAILABLE):
    """The service (or the gateway) cannot be reached or is not ready.

    `connect_failed` is True when nothing answered at the target at all (no gateway running
    there, a wrong host or port), as opposed to a gateway that answered for a service that is
    down or still loading.
    """

    @property
    def connect_failed(self) -> bool:
        text = self.message.lower()
        if "upstream" in text:  # the gateway answered: a service behind it is down
            return False
        return any(
            marker in text
            for marker in (
                "failed to connect",
                "connection refused",
                "dns resolution failed",
                "name resolution",
                "connect failed",
                "socket closed",
                "ssl handshake",
                "handshake failed",
            )
        )


class Unauthenticated(SpeechmeshError, code=grpc.StatusCode.UNAUTHENTICATED):
    """No or wrong credentials: pass api_key= or token= (the gateway's auth is on)."""


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(error)  # works for sync and grpc.aio errors alike
    except (ValueError, AttributeError, TypeError):
        return None


def _details(status: status_pb2.Status | None) -> dict[str, Any]:
    """The google.rpc details of a status as keyword arguments of SpeechmeshError."""
    found: dict[str, Any] = {"field_violations": []}
    for detail in status.details if status is not None else []:
        for kind, read in _DETAILS.items():
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                read(message, found)
    return found


def _bad_request(bad: error_details_pb2.BadRequest, found: dict[str, Any]) -> None:
    found["field_violations"] += [
        FieldViolation(v.field, v.description) for v in bad.field_violations
    ]


def _retry_info(info: error_details_pb2.RetryInfo, found: dict[str, Any]) -> None:
    found["retry_after"] = info.retry_delay.ToNanoseconds() / 1e9


def _error_info(info: error_details_pb2.ErrorInfo, found: dict[str, Any]) -> None:
    found["reason"] = info.reason


def _resource_info(info: error_details_pb2.ResourceInfo, found: dict[str, Any]) -> None:
    found["resource"] = ResourceInfo(info.resource_type, info.resource_name, info.description)


#: How each kind of google.rpc detail the services attach is read.
_DETAILS: dict[type, Callable[[Any, dict[str, Any]], None]] = {
    error_details_pb2.BadRequest: _bad_request,
    error_details_pb2.RetryInfo: _retry_info,
    error_details_pb2.ErrorInfo: _error_info,
    error_details_pb2.ResourceInfo: _resource_info,
}


def from_rpc_error(error: grpc.RpcError) -> SpeechmeshError:
    """The typed exception for a failed call (a grpc.RpcError or grpc.aio.AioRpcError)."""
    try:
        code = error.code()
        message = error.details() or ""
    except AttributeError:  # not a call: nothing more to say than its text
        return SpeechmeshError(str(error), rpc=error)
    status = _rich_status(error)
    cls = _BY_CODE.get(code, SpeechmeshError)
    return cls(message, code=code, status=status, rpc=error, **_details(status))


#: gRPC status codes by their numbers (google.rpc.Status.code).
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Status code number (UNKNOWN for one not known)."""
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


def from_status(status: status_pb2.Status) -> SpeechmeshError:
    """The typed exception for a google.rpc.Status that came in a message rather than as a
    call's status (a failed job's error, a file of a batch that failed)."""
    code = status_code(status.code)
    cls = _BY_CODE.get(code, SpeechmeshError)
    return cls(status.message, code=code, status=status, **_details(status))
