"""arq's Worker, made to outlast a Redis outage and to lease its jobs.

arq's poll loop lets any Redis error escape, which ends the worker: with
Redis restarting, every worker would exit (and `memoryd up` with them). Here
the loop logs the outage once, waits, and polls again; jobs that were running
go on (they need Postgres, not Redis) and jobs that Redis lost are queued
again by the sweeps (workers.jobs).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# What a poll raises while Redis is unreachable.
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    TimeoutError,
    OSError,
)
# Between polls while Redis is down; short, so jobs resume soon after it returns.
OUTAGE_POLL_S = 1.0


class MemorydWorker(Worker):
    def __init__(self, *, job_lease: timedelta, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # arq would keep a started job's in-progress key for the longest
        # timeout plus 10 s; a lease (workers.lease renews it) instead.
        self.in_progress_timeout_s = job_lease.total_seconds()
        self._redis_down = False

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_DOWN_ERRORS as exc:
            if not self._redis_down:
                log.warning(
                    "Redis is unreachable (%s); polling again every %gs", exc, OUTAGE_POLL_S
                )
            self._redis_down = True
            await asyncio.sleep(OUTAGE_POLL_S)
            return
        if self._redis_down:
            self._redis_down = False
            await self._release_lost_slots()
            log.info("Redis is back; polling the queue again")

    async def _release_lost_slots(self) -> None:
        """Give back job slots taken by starts that Redis failed half-way.

        arq takes a slot (semaphore and counter) before it asks Redis whether
        a job may start, and gives it back only on the paths it expects; a
        Redis error in between keeps it for ever, and after max_jobs of those
        the worker would never start a job again. Each slot belongs to a
        running job task: any beyond those are lost ones.
        """
        await asyncio.sleep(0)  # done callbacks of finished jobs give their slots back first
        running = sum(not task.done() for task in self.tasks.values())
        lost = self.job_counter - running
        for _ in range(max(0, lost)):
            self.job_counter -= 1
            self.sem.release()
        if lost > 0:
            log.info("released %d job slots lost during the Redis outage", lost)
