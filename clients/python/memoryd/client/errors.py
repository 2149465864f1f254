"""Typed errors for failed memoryd calls, mapped from gRPC status codes in one table.

Each error carries the status code, the server's message, and what the
server's google.rpc.ErrorInfo detail says: the machine-readable reason and,
for bad input, the name of the offending request field.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"
_REQUEST_ID_KEY = "x-request-id"


class MemorydError(Exception):
    """Base of every error a memoryd call raises."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
        field: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.field = field
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(MemorydError):
    """A request field is missing, malformed or out of range; `field` names it."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MemorydError):
    """The named memory, fact, session or job does not exist for this user."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MemorydError):
    """A message id or fact key is already taken."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MemorydError):
    """The server is not in the state the call needs."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(MemorydError):
    """The call carried no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(MemorydError):
    """The caller may not make this call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(MemorydError):
    """A limit or quota was reached (or a message was too large for the channel)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(MemorydError):
    """The server or one of its stores is unreachable; raised after the retries ran out."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(MemorydError):
    """The call's deadline passed before it finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(MemorydError):
    """The call was cancelled."""

    code = grpc.StatusCode.CANCELLED


class Unimplemented(MemorydError):
    """This server does not implement the method (an older memoryd)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(MemorydError):
    """The server failed; its log has the details under `request_id`."""

    code = grpc.StatusCode.INTERNAL


_ERROR_BY_CODE: dict[grpc.StatusCode, type[MemorydError]] = {
    error.code: error
    for error in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Unimplemented,
        Internal,
    )
}


def _error_info(trailers: Any) -> tuple[str | None, str | None, str | None]:
    """(reason, field, request id) from a call's trailing metadata."""
    reason = field = request_id = None
    for key, value in trailers or ():
        if key == _REQUEST_ID_KEY and isinstance(value, str):
            request_id = value
        elif key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = str(info.reason) or None
                    field = str(info.metadata["field"]) if "field" in info.metadata else None
    return reason, field, request_id


def from_rpc_error(error: grpc.RpcError) -> MemorydError:
    """The typed error for a failed call (grpc.RpcError or grpc.aio.AioRpcError)."""
    call: Any = error  # both kinds of error are also the call: code(), details(), trailers
    code: grpc.StatusCode = call.code()
    reason, field, request_id = _error_info(call.trailing_metadata())
    error_type = _ERROR_BY_CODE.get(code, MemorydError)
    return error_type(
        call.details() or code.name,
        code=code,
        reason=reason,
        field=field,
        request_id=request_id,
    )
