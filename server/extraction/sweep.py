"""The worker's periodic pass over extraction: sessions gone idle with
messages not yet extracted, jobs whose enqueue was lost (Redis down at the
time) or whose worker died for good, and finished jobs past their retention.
It only enqueues; arq's per-session job ids make a repeat harmless."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from redis.exceptions import RedisError

from server.extraction.models import Trigger
from server.job_queue import enqueue_extraction, extraction_held
from server.resources import Resources
from server.stores import extraction_store

log = logging.getLogger(__name__)

# Sessions and jobs handled per pass; the next pass takes the rest.
BATCH = 500


class ExtractionSweep:
    def __init__(self, resources: Resources) -> None:
        self._settings = resources.settings
        self._postgres = resources.postgres
        self._arq = resources.arq

    async def run(self) -> int:
        now = datetime.now(UTC)
        async with self._postgres.connection() as conn:
            idle = []
            if self._settings.extract_auto:
                idle = await extraction_store.idle_sessions(
                    conn, idle_before=now - self._settings.extract_idle, limit=BATCH
                )
            # Workers start queued jobs within seconds, and a running job's
            # worker holds a lease: a job untouched for longer may have lost
            # its arq job (Redis restarted empty, with or without its worker).
            # Enqueueing it again is safe either way (while arq still holds
            # the job, queued or running under a lease, the same arq job id
            # makes the enqueue a no-op); such jobs are skipped before that.
            stalled = await extraction_store.stalled_jobs(
                conn, before=now - self._settings.extract_requeue_after, limit=BATCH
            )
        enqueued = 0
        try:
            for user_id, session_id in idle:
                enqueued += await enqueue_extraction(
                    self._arq, user_id=user_id, session_id=session_id, trigger=Trigger.IDLE
                )
            for job in stalled:
                if await extraction_held(
                    self._arq, user_id=job.user_id, session_id=job.session_id, job_id=job.id
                ):
                    continue
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
