"""The deadline of the gRPC call being served, for the stores to honour.

The request interceptor sets it from the call's remaining time; Postgres
statements, pool checkouts and Redis calls made while serving the call are
bounded by min(their own timeout, time left), so a call whose deadline passes
stops its work (and rolls its transaction back) instead of finishing for
nobody. Outside a call (workers, CLI) there is no deadline.
"""

from __future__ import annotations

import contextvars
import time

from server.errors import DeadlineExceeded

# time.monotonic() at which the current call's deadline passes; None: no deadline.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "call_deadline", default=None
)


def set_from_remaining(remaining: float | None) -> None:
    """Record the deadline of the call now starting (context.time_remaining())."""
    call_deadline.set(None if remaining is None else time.monotonic() + remaining)


def time_left() -> float | None:
    """Seconds until the current call's deadline (may be <= 0), None without one."""
    deadline = call_deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def time_left_at_least(floor: float) -> float | None:
    """time_left(), never below `floor` (for asyncio.timeout); None without a deadline."""
    left = time_left()
    return None if left is None else max(floor, left)


def expired() -> bool:
    left = time_left()
    return left is not None and left <= 0


def bound(timeout: float | None) -> float | None:
    """`timeout` shortened to the time the call has left; DeadlineExceeded when
    it has none left."""
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise DeadlineExceeded("the call's deadline passed before its work could finish")
    return left if timeout is None else min(timeout, left)


def limited_by_deadline(timeout: float | None) -> bool:
    """True when the call's deadline, not `timeout`, is the tighter bound."""
    left = time_left()
    return left is not None and (timeout is None or left < timeout)
