"""Automatic extraction after appends: when a session has gained
settings.extract_after_messages messages not yet extracted, enqueue its job.

The append already returns the session row with its message count and its
extraction watermark, so deciding costs no round trip; the enqueue is one
Redis call per extract_after_messages messages, not per append.
"""

from __future__ import annotations

import logging

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from server.extraction.models import Trigger
from server.job_queue import enqueue_extraction
from server.models import Session
from server.settings import Settings

log = logging.getLogger(__name__)


def crosses_threshold(*, message_count: int, appended: int, extracted_seq: int, every: int) -> bool:
    """True when this append took the unextracted backlog past a multiple of
    `every`: once at every, again at 2*every while extraction lags, and so on
    (a lost or coalesced enqueue is retried by a later append)."""
    after = message_count - extracted_seq
    before = after - appended
    return after >= every and after // every > max(before, 0) // every


class AppendTrigger:
    def __init__(self, arq: ArqRedis, settings: Settings) -> None:
        self._arq = arq
        self._settings = settings

    async def after_append(self, session: Session, *, appended: int) -> None:
        settings = self._settings
        if not settings.extract_auto or not crosses_threshold(
            message_count=session.message_count,
            appended=appended,
            extracted_seq=session.extracted_seq,
            every=settings.extract_after_messages,
        ):
            return
        try:
            await enqueue_extraction(
                self._arq,
                user_id=session.user_id,
                session_id=session.session_id,
                trigger=Trigger.MESSAGES,
            )
        except (RedisError, TimeoutError) as exc:
            # The messages are stored; the idle sweep extracts them later.
            log.warning("could not enqueue extraction of session %r: %s", session.session_id, exc)
