from __future__ import annotations

import contextvars

import grpc
import psycopg.errors
import pytest

from server import deadlines
from server.api.status import failure_for
from server.errors import DeadlineExceeded
from server.stores.postgres_pool import _quantize_ms


def in_call(remaining: float | None, fn: object) -> object:
    """Run `fn` as if serving a call with `remaining` seconds left."""

    def run() -> object:
        deadlines.set_from_remaining(remaining)
        return fn()  # type: ignore[operator]

    return contextvars.copy_context().run(run)


def test_without_a_call_deadline_timeouts_are_unchanged() -> None:
    assert deadlines.bound(5.0) == 5.0
    assert not deadlines.limited_by_deadline(5.0)
    assert not deadlines.expired()


def test_a_sooner_deadline_bounds_the_timeout() -> None:
    bounded = in_call(1.0, lambda: deadlines.bound(5.0))
    assert isinstance(bounded, float) and 0.9 < bounded <= 1.0
    assert in_call(1.0, lambda: deadlines.limited_by_deadline(5.0)) is True
    assert in_call(10.0, lambda: deadlines.bound(5.0)) == 5.0


def test_no_time_left_is_deadline_exceeded() -> None:
    with pytest.raises(DeadlineExceeded):
        in_call(-0.1, lambda: deadlines.bound(5.0))


def test_a_store_error_after_the_deadline_is_deadline_exceeded_not_unavailable() -> None:
    error = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    assert failure_for(error, request_id="r").code == grpc.StatusCode.UNAVAILABLE
    late = in_call(-0.1, lambda: failure_for(error, request_id="r"))
    assert late.code == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("seconds", "ms"), [(4.987, 4900), (1.0, 1000), (0.987, 980), (0.005, 5), (0.0001, 1)]
)
def test_statement_timeouts_round_down_to_steps(seconds: float, ms: int) -> None:
    assert _quantize_ms(seconds) == ms
