"""Leases on running jobs, so a job whose worker was killed is retried within
seconds rather than after the longest job timeout.

arq marks a running job with an in-progress key; while it exists no worker
starts that job again, and arq lets it expire only after the longest timeout
of any function plus 10 s (here most of an hour). So a job whose worker died
with kill -9, an OOM kill or a node failure would sit that long. Instead, the
key lives for one lease (settings.job_lease) at a time, and the worker running
the job renews it every third of that. A worker that dies stops renewing; the
key expires and the next worker polling the queue starts the job again (the
job is still queued: arq removes it only when it ends), counting the try.

A renewal that comes too late (an event loop stalled for a whole lease) lets
a second worker start the same job: jobs are idempotent and guard their
effects in Postgres, so that costs work, never a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Our entry in arq's per-job ctx: the task renewing that job's lease.
_RENEWAL_KEY = "memoryd_lease"


class JobLeases:
    """arq's on_job_start/on_job_end hooks that keep a running job's lease."""

    def __init__(self, lease: timedelta) -> None:
        self.lease_ms = max(1, int(lease.total_seconds() * 1000))
        self._every_s = lease.total_seconds() / 3

    async def on_job_start(self, ctx: dict[str, Any]) -> None:
        redis: ArqRedis = ctx["redis"]
        key = in_progress_key_prefix + str(ctx["job_id"])
        ctx[_RENEWAL_KEY] = asyncio.create_task(self._renew(redis, key))

    async def on_job_end(self, ctx: dict[str, Any]) -> None:
        task = ctx.pop(_RENEWAL_KEY, None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew(self, redis: ArqRedis, key: str) -> None:
        while True:
            try:
                # PEXPIRE never creates the key: once arq has deleted it (the
                # job ended), a late renewal does nothing.
                await redis.pexpire(key, self.lease_ms)
            except (RedisError, OSError, TimeoutError) as exc:
                # Redis is down: the poll loop reports it; the job goes on.
                log.debug("could not renew the lease %s: %s", key, exc)
            await asyncio.sleep(self._every_s)
