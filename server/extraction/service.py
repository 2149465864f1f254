"""ExtractMemories and GetJob: queue a job, report on it.

The call only validates, stores a QUEUED job row and enqueues the arq job;
extraction itself runs in a worker (server.extraction.runner).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from redis.exceptions import RedisError

from server import validation
from server.errors import InvalidArgument, NotFound
from server.extraction.messages import encode_messages
from server.extraction.models import Job, Trigger
from server.job_queue import enqueue_extraction
from server.models import NewMessage
from server.resources import Resources
from server.sessions import check_new_messages
from server.stores import extraction_store, session_store

log = logging.getLogger(__name__)


class ExtractionService:
    def __init__(self, resources: Resources) -> None:
        self._settings = resources.settings
        self._postgres = resources.postgres
        self._arq = resources.arq
        self._cipher = resources.cipher

    async def extract(self, *, user_id: str, session_id: str, messages: list[NewMessage]) -> Job:
        """Queue extraction of a session's messages not yet extracted, or of
        the given messages. A session's job already queued is returned as is."""
        max_length = self._settings.max_id_length
        validation.require_user_id(user_id, max_length=max_length)
        if session_id and messages:
            raise InvalidArgument("messages", "give session_id or messages, not both")
        if not session_id and not messages:
            raise InvalidArgument(
                "session_id", "is required (or give the messages to extract from in messages)"
            )
        if session_id:
            validation.require_id("session_id", session_id, max_length=max_length)
            async with self._postgres.connection() as conn, conn.transaction():
                session = await session_store.get_session(
                    conn, user_id=user_id, session_id=session_id
                )
                if session is None:
                    raise NotFound(f"user {user_id!r} has no session {session_id!r}")
                job = await extraction_store.queue_session_job(
                    conn, user_id=user_id, session_id=session_id, trigger=Trigger.API
                )
        else:
            check_new_messages(self._settings, messages)
            async with self._postgres.connection() as conn, conn.transaction():
                job = await extraction_store.queue_messages_job(
                    conn,
                    user_id=user_id,
                    messages=encode_messages(messages, now=datetime.now(UTC)),
                    cipher=self._cipher,
                )
        try:
            await enqueue_extraction(
                self._arq, user_id=user_id, session_id=session_id, job_id=job.id
            )
        except (RedisError, TimeoutError) as exc:
            # The job is stored QUEUED; the worker's sweep enqueues it again.
            log.warning("could not enqueue extraction job %s: %s", job.id, exc)
        return job

    async def get_job(self, *, user_id: str, job_id: str) -> Job:
        validation.require_user_id(user_id, max_length=self._settings.max_id_length)
        job_id = validation.require_uuid("id", job_id, noun="job id")
        async with self._postgres.connection() as conn:
            job = await extraction_store.get_job(conn, user_id=user_id, job_id=job_id)
        if job is None:
            raise NotFound(f"user {user_id!r} has no extraction job {job_id}")
        return job
