"""The worker's periodic pass over extraction: sessions gone idle with
messages not yet extracted, jobs whose enqueue was lost (Redis down at the
time) or whose worker died for good, and finished jobs past their retention.
It only enqueues; arq's per-session job ids make a repeat harmless."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError

from server.extraction.models import Trigger
from server.job_queue import enqueue_extraction
from server.resources import Resources
from server.stores import extraction_store

log = logging.getLogger(__name__)

# Sessions and jobs handled per pass; the next pass takes the rest.
BATCH = 500


class ExtractionSweep:
    def __init__(self, resources: Resources, *, running_grace: timedelta) -> None:
        self._settings = resources.settings
        self._postgres = resources.postgres
        self._arq = resources.arq
        # A running job untouched this long has no worker left (the job
        # timeout has passed): enqueue it again so it is retried or failed.
        self._running_grace = running_grace

    async def run(self) -> int:
        now = datetime.now(UTC)
        async with self._postgres.connection() as conn:
            idle = []
            if self._settings.extract_auto:
                idle = await extraction_store.idle_sessions(
                    conn, idle_before=now - self._settings.extract_idle, limit=BATCH
                )
            stalled = await extraction_store.stalled_jobs(
                conn,
                # Workers start queued jobs within seconds: one untouched
                # for longer lost its enqueue.
                queued_before=now - self._settings.extract_requeue_after,
                running_before=now - self._running_grace,
                limit=BATCH,
            )
        enqueued = 0
        try:
            for user_id, session_id in idle:
                enqueued += await enqueue_extraction(
                    self._arq, user_id=user_id, session_id=session_id, trigger=Trigger.IDLE
                )
            for job in stalled:
                enqueued += await enqueue_extraction(
                    self._arq,
                    user_id=job.user_id,
                    session_id=job.session_id,
                    job_id=job.id,
                    trigger=job.trigger,
                )
        except (RedisError, TimeoutError) as exc:
            log.warning("extraction sweep could not enqueue: %s", exc)
        async with self._postgres.connection() as conn:
            purged = await extraction_store.delete_finished_jobs(
                conn, before=now - self._settings.extract_job_retention, limit=BATCH
            )
        if purged:
            log.info("deleted %d extraction jobs finished before the retention", purged)
        if enqueued:
            log.info(
                "extraction sweep: %d idle sessions, %d stalled jobs, %d enqueued",
                len(idle),
                len(stalled),
                enqueued,
            )
        return enqueued
