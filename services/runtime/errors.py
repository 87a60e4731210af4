"""API errors with google.rpc details, and how they reach the caller.

Servicers and domain code raise ApiError (or AudioError for unusable audio);
the server's interceptor turns them into a gRPC status with details, so a
caller's mistake is never INTERNAL.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "speechmesh.dev"


class ApiError(Exception):
    """An error to answer the caller with: a code, a message, optional details."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list[Message] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(self.to_proto())

    def to_proto(self) -> status_pb2.Status:
        """The error as a google.rpc.Status message (e.g. one file's error in a job's result)."""
        packed = []
        for detail in self.details:
            any_msg = any_pb2.Any()
            any_msg.Pack(detail)
            packed.append(any_msg)
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=packed
        )


def invalid_argument(field: str, description: str) -> ApiError:
    """A bad field: the message and a BadRequest field violation name it."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field}: {description}",
        [error_details_pb2.BadRequest(field_violations=[violation])],
    )


def failed_precondition(message: str, reason: str) -> ApiError:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message, [info])


def not_found(resource_type: str, resource_name: str, description: str) -> ApiError:
    return _resource_error(grpc.StatusCode.NOT_FOUND, resource_type, resource_name, description)


def already_exists(resource_type: str, resource_name: str, description: str) -> ApiError:
    return _resource_error(
        grpc.StatusCode.ALREADY_EXISTS, resource_type, resource_name, description
    )


def _resource_error(
    code: grpc.StatusCode, resource_type: str, resource_name: str, description: str
) -> ApiError:
    info = error_details_pb2.ResourceInfo(
        resource_type=resource_type, resource_name=resource_name, description=description
    )
    return ApiError(code, description, [info])


def resource_exhausted(message: str, retry_after_s: float) -> ApiError:
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, [_retry_info(retry_after_s)])


def unavailable(message: str, retry_after_s: float, reason: str) -> ApiError:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    return ApiError(grpc.StatusCode.UNAVAILABLE, message, [info, _retry_info(retry_after_s)])


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)
