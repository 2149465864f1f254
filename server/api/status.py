"""The one place where errors become gRPC statuses.

Domain errors map by type; driver errors that mean a store is out of reach
become UNAVAILABLE; anything else is INTERNAL with a generic message (the
traceback goes to the log, not to the caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server import deadlines, errors
from server.stores import STORE_DOWN_ERRORS

ERROR_DOMAIN = "memoryd"

_CODE_BY_ERROR: dict[type[errors.MemorydError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """What the caller is told about a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str
    field: str | None = None
    expected: bool = True  # False: a bug, logged with its traceback
    # When a retry may succeed (rate limits): sent as a google.rpc.RetryInfo.
    retry_delay: timedelta | None = None

    def details(self) -> bytes:
        """google.rpc.Status with an ErrorInfo (and a RetryInfo when there is a
        retry delay), for the grpc-status-details-bin trailer."""
        metadata = {"field": self.field} if self.field else {}
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=metadata
        )
        details = [any_pb2.Any()]
        details[0].Pack(info)
        if self.retry_delay is not None:
            delay = duration_pb2.Duration()
            delay.FromTimedelta(self.retry_delay)
            details.append(any_pb2.Any())
            details[1].Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=details
        )
        serialized: bytes = status.SerializeToString()
        return serialized


def failure_for(exc: BaseException, *, request_id: str) -> Failure:
    for error_type, code in _CODE_BY_ERROR.items():
        if isinstance(exc, error_type):
            retry_delay = getattr(exc, "retry_delay", None)
            return Failure(
                code,
                exc.message,
                exc.reason,
                exc.field,
                retry_delay=None if retry_delay is None else timedelta(seconds=retry_delay),
            )
    if isinstance(exc, STORE_DOWN_ERRORS) and deadlines.expired():
        # The store was cut short by the call's own deadline (statement or
        # pool timeout bounded by it), not found down.
        return Failure(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "the call's deadline passed before its work could finish; nothing was written",
            errors.DeadlineExceeded.reason,
        )
    if isinstance(exc, STORE_DOWN_ERRORS):
        return Failure(
            grpc.StatusCode.UNAVAILABLE,
            "a memoryd store (Postgres or Redis) is unavailable; retry with backoff",
            errors.StoreUnavailable.reason,
        )
    if isinstance(exc, NotImplementedError):  # what generated servicer bases raise
        return Failure(
            grpc.StatusCode.UNIMPLEMENTED,
            "this method is not implemented by this memoryd version yet",
            "UNIMPLEMENTED",
        )
    return Failure(
        grpc.StatusCode.INTERNAL,
        f"internal error; the server log has the details under request id {request_id}",
        "INTERNAL",
        expected=False,
    )
