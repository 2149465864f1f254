from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from server import errors
from server.api.rate_limit import RateLimitGuard, TokenBuckets, rate_limit_guard
from server.api.status import failure_for
from server.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def buckets(clock: Clock, *, rate: float = 2, burst: int = 3, max_users: int = 100) -> TokenBuckets:
    return TokenBuckets(rate=rate, burst=burst, max_users=max_users, clock=clock)


def test_a_burst_passes_then_calls_wait_for_the_refill() -> None:
    clock = Clock()
    limiter = buckets(clock)
    assert [limiter.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("u") == pytest.approx(0.5)  # one token at 2 a second
    clock.now += 0.25
    assert limiter.take("u") == pytest.approx(0.25)  # a refused call takes nothing
    clock.now += 0.25
    assert limiter.take("u") == 0.0
    assert limiter.take("u") > 0


def test_users_have_buckets_of_their_own() -> None:
    limiter = buckets(Clock(), burst=1)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_idle_buckets_are_forgotten_and_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = buckets(clock, burst=2, max_users=50)
    for user in range(10):
        limiter.take(f"idle-{user}")
    clock.now += 1.0  # burst / rate: every bucket is full again
    limiter.take("new")
    assert len(limiter) == 1
    for user in range(500):
        limiter.take(f"busy-{user}")
    assert len(limiter) == 50


def test_a_forgotten_busy_user_gets_no_more_than_a_fresh_burst() -> None:
    clock = Clock()
    limiter = buckets(clock, burst=2, max_users=2)
    assert [limiter.take("a") for _ in range(3)][-1] > 0
    limiter.take("b")
    limiter.take("c")  # evicts "a", the least recently seen
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_the_guard_is_off_by_default_and_exempts_health() -> None:
    assert rate_limit_guard(Settings()) is None
    guard = rate_limit_guard(Settings(rate_limit=1, rate_limit_burst=1))
    assert isinstance(guard, RateLimitGuard)

    class Request:
        user_id = "u"

    context: object = None
    for _ in range(5):
        guard("/grpc.health.v1.Health/Check", Request(), context)  # type: ignore[arg-type]
    guard("/memoryd.v1.SessionService/GetHistory", Request(), context)  # type: ignore[arg-type]
    with pytest.raises(errors.RateLimited) as caught:
        guard("/memoryd.v1.SessionService/GetHistory", Request(), context)  # type: ignore[arg-type]
    assert caught.value.retry_delay == pytest.approx(1.0, abs=0.05)


def test_rate_limited_carries_retry_info_beside_error_info() -> None:
    failure = failure_for(errors.RateLimited("slow down", retry_delay=1.25), request_id="r")
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.retry_delay == timedelta(seconds=1.25)
    status = status_pb2.Status.FromString(failure.details())
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.reason == "RATE_LIMITED"
    assert status.details[1].Unpack(retry)
    assert retry.retry_delay.ToTimedelta() == timedelta(seconds=1.25)


def test_other_errors_carry_no_retry_info() -> None:
    failure = failure_for(errors.ResourceExhausted("full"), request_id="r")
    assert len(status_pb2.Status.FromString(failure.details()).details) == 1


def test_the_request_size_limit_follows_the_item_limits() -> None:
    small = Settings(max_messages_per_append=10, max_batch_memories=10)
    assert small.request_bytes_limit < Settings().request_bytes_limit
    assert small.request_bytes_limit > 10 * (small.max_message_bytes + small.max_metadata_bytes)
    assert Settings(max_request_bytes=1234).request_bytes_limit == 1234
