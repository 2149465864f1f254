from __future__ import annotations

import grpc
import psycopg
import pytest
import redis.exceptions
from google.rpc import error_details_pb2, status_pb2

from server import errors
from server.api.status import failure_for


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument("user_id", "is required"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("no such session"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("dup"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ResourceExhausted("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.StoreUnavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (psycopg.OperationalError("connection refused"), grpc.StatusCode.UNAVAILABLE),
        (redis.exceptions.ConnectionError("refused"), grpc.StatusCode.UNAVAILABLE),
        (NotImplementedError(), grpc.StatusCode.UNIMPLEMENTED),
        (KeyError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_maps_to_one_status(error: Exception, code: grpc.StatusCode) -> None:
    assert failure_for(error, request_id="r").code == code


def test_internal_errors_hide_the_exception_and_name_the_request() -> None:
    failure = failure_for(KeyError("secret detail"), request_id="req-9")
    assert "secret" not in failure.message
    assert "req-9" in failure.message
    assert not failure.expected


def test_details_carry_error_info_with_reason_and_field() -> None:
    failure = failure_for(errors.InvalidArgument("messages[0].role", "bad"), request_id="r")
    status = status_pb2.Status.FromString(failure.details())
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, info.metadata["field"]) == (
        "INVALID_ARGUMENT",
        "memoryd",
        "messages[0].role",
    )
    assert status.message == "messages[0].role: bad"
