"""Per-user request rate limit: a token bucket per user_id, as a call guard.

Each user may make `rate` requests a second on average and `burst` at once.
Buckets live in this process: memoryd runs one server per agent pod, so the
limit holds per pod, not across pods. Memory is bounded: a bucket idle long
enough to be full again is the same as a new one and is forgotten, and past
`max_users` the least recently seen user is forgotten first (they get a full
burst back, never fewer requests than the limit allows).

Why not a library: `limits` keeps a timestamp per request (moving window) or
locks and a timer thread (memory storage), and aiolimiter must be awaited; a
guard runs on every call, synchronously, so this is a few float operations and
one dict access.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from grpc.aio import ServicerContext

from server.api.guards import user_id_of
from server.errors import RateLimited
from server.settings import Settings

# Probes and tooling, never limited.
_EXEMPT_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# The bucket of calls that name no user (admin calls, invalid requests).
_NO_USER = ""


class TokenBuckets:
    """Token buckets keyed by user, refilled at `rate` tokens a second up to `burst`."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_users: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._max_users = max_users
        self._clock = clock
        # user -> (tokens, time of last refill); insertion order is recency.
        self._buckets: dict[str, tuple[float, float]] = {}
        # After this long idle a bucket is full again: forgetting it changes nothing.
        self._refill_s = burst / rate

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when granted, else the seconds until
        one will be available."""
        now = self._clock()
        buckets = self._buckets
        state = buckets.pop(key, None)
        if state is None:
            tokens = self._burst
            self._evict(now)
        else:
            tokens = min(self._burst, state[0] + (now - state[1]) * self._rate)
        if tokens >= 1.0:
            buckets[key] = (tokens - 1.0, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def _evict(self, now: float) -> None:
        """Forget the least recently seen buckets that are full again, and any
        beyond max_users."""
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets))
            if len(buckets) < self._max_users and now - buckets[oldest][1] < self._refill_s:
                return
            del buckets[oldest]


class RateLimitGuard:
    """A CallGuard (server.api.interceptor) refusing a user's calls beyond the
    rate with RESOURCE_EXHAUSTED and a RetryInfo saying when to retry."""

    def __init__(self, buckets: TokenBuckets, *, rate: float, max_user_id_length: int) -> None:
        self._buckets = buckets
        self._rate = rate
        self._max_key = max_user_id_length

    def __call__(self, method: str, request: Any, context: ServicerContext[Any, Any]) -> None:
        if method.startswith(_EXEMPT_PREFIXES):
            return
        user_id = user_id_of(request) or _NO_USER
        if len(user_id) > self._max_key:
            # Refused as invalid by the servicer; never a bucket of its own,
            # so huge ids cannot fill memory.
            user_id = _NO_USER
        wait = self._buckets.take(user_id)
        if wait:
            raise RateLimited(
                f"user {user_id[:128]!r} is over the rate limit of {self._rate:g} requests "
                f"a second; retry in {math.ceil(wait * 1000)} ms",
                retry_delay=wait,
            )


def rate_limit_guard(settings: Settings) -> RateLimitGuard | None:
    """The guard for MEMORYD_RATE_LIMIT(_BURST), or None when the limit is off
    (then no guard runs at all: the limit costs nothing)."""
    rate = settings.rate_limit
    if rate <= 0:
        return None
    burst = settings.rate_limit_burst or max(1, math.ceil(rate))
    buckets = TokenBuckets(rate=rate, burst=burst, max_users=settings.rate_limit_max_users)
    return RateLimitGuard(buckets, rate=rate, max_user_id_length=settings.max_id_length)
