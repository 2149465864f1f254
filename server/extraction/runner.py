"""Running extraction jobs in a worker.

A session's jobs run one at a time (one arq job per session). Each attempt
reads the messages after the session's watermark up to a high seq fixed at
its start, asks the extractor for candidates, embeds them, and then in ONE
transaction reconciles them with the stored memories, records the job's
counts and moves the watermark from where the attempt found it to the high
seq. The watermark moves by compare-and-set, and the job row is locked and
must still be RUNNING: an attempt killed half-way wrote nothing, and an
attempt racing one that already committed rolls back, so no message is ever
turned into memories twice.

Messages appended while a job runs lie past its high seq: when it is done,
the runner takes the session's next queued job, or queues a follow-up itself
when automatic extraction is on and enough messages are waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from server.extraction.candidates import ExtractionFailed, Extractor
from server.extraction.messages import decode_messages
from server.extraction.models import Counts, Job, JobState, Trigger
from server.extraction.reconcile import Reconciler, Target
from server.memories import MemoryService
from server.models import Session, StoredMessage
from server.resources import Resources
from server.settings import Settings
from server.stores import extraction_store, session_store

# Jobs one run takes in turn (a session's queued job, then follow-ups for
# messages that arrived meanwhile); the idle sweep or the next trigger takes the
# rest, so one busy session cannot hold a worker slot for ever.
MAX_ROUNDS = 4
# Embedding the candidates and the reconciling transaction, beyond the extractor call.
_ROUND_OVERHEAD = timedelta(minutes=1)


def run_timeout(settings: Settings) -> timedelta:
    """The most one run (one arq job) may take."""
    return MAX_ROUNDS * (settings.extract_timeout + _ROUND_OVERHEAD)


class RetryLater(Exception):
    """The attempt failed and the job has tries left; run it again after `delay_s`."""

    def __init__(self, message: str, *, delay_s: float) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class _Raced(Exception):
    """Another attempt committed these messages first; this one rolls back."""


@dataclass(frozen=True, slots=True)
class Outcome:
    job_id: str
    state: JobState
    counts: Counts
    messages: int


log = logging.getLogger(__name__)


class ExtractionRunner:
    def __init__(self, resources: Resources, extractor: Extractor) -> None:
        self._settings = resources.settings
        self._postgres = resources.postgres
        self._extractor = extractor
        self._cipher = resources.cipher
        memories = MemoryService(resources)
        self._reconciler = Reconciler(
            settings=resources.settings, embedder=resources.embedder, memories=memories
        )

    async def run(
        self, *, user_id: str, session_id: str, job_id: str, trigger: Trigger
    ) -> list[Outcome]:
        """Run a job given its own messages, or the session's open jobs
        (creating one for an automatic trigger). Raises RetryLater."""
        if not session_id:
            outcome = await self._run_messages_job(user_id, job_id)
            return [] if outcome is None else [outcome]
        outcomes: list[Outcome] = []
        for _ in range(MAX_ROUNDS):
            claimed = await self._claim_session_job(
                user_id, session_id, trigger=trigger if not outcomes else None
            )
            if claimed is None:
                return outcomes
            job, session = claimed
            outcome = await self._attempt_session(job, session)
            if outcome is not None:
                outcomes.append(outcome)
                if outcome.state is JobState.FAILED:
                    return outcomes
        return outcomes

    # -- session jobs ----------------------------------------------------------

    async def _claim_session_job(
        self, user_id: str, session_id: str, *, trigger: Trigger | None
    ) -> tuple[Job, Session] | None:
        """Lock and start the session's next job; None when there is none.

        `trigger` (the first round of an automatic trigger) creates a job when
        none is open and messages wait; after a job, a follow-up is created
        when automatic extraction is on and enough messages arrived meanwhile.
        """
        settings = self._settings
        async with self._postgres.connection() as conn, conn.transaction():
            session = await session_store.get_session(conn, user_id=user_id, session_id=session_id)
            job = await extraction_store.next_session_job(
                conn, user_id=user_id, session_id=session_id
            )
            if session is None:
                if job is not None:
                    await extraction_store.set_error(
                        conn,
                        user_id=user_id,
                        job_id=job.id,
                        error=f"session {session_id!r} was deleted before it was extracted",
                        final=True,
                    )
                return None
            waiting = session.message_count - session.extracted_seq
            if job is None:
                if trigger in (Trigger.MESSAGES, Trigger.IDLE) and waiting > 0:
                    new_trigger = trigger
                elif (
                    trigger is None
                    and settings.extract_auto
                    and waiting >= settings.extract_after_messages
                ):
                    new_trigger = Trigger.MESSAGES  # arrived while the last job ran
                else:
                    return None
                job = await extraction_store.queue_session_job(
                    conn, user_id=user_id, session_id=session_id, trigger=new_trigger
                )
            if job.state is JobState.RUNNING and job.attempts >= settings.extract_max_tries:
                # Its earlier attempts died without recording why (worker killed,
                # store errors): stop rather than retry forever.
                await extraction_store.set_error(
                    conn,
                    user_id=user_id,
                    job_id=job.id,
                    error=f"stopped after {job.attempts} attempts; last error: "
                    f"{job.error or 'the worker stopped during the attempt'}",
                    final=True,
                )
                return None
            high = min(session.message_count, session.extracted_seq + settings.extract_max_messages)
            await extraction_store.start(
                conn,
                user_id=user_id,
                job_id=job.id,
                extractor=self._extractor.name,
                seqs=(session.extracted_seq + 1, high),
                message_count=max(0, high - session.extracted_seq),
            )
        return _with_attempt(job), session

    async def _attempt_session(self, job: Job, session: Session) -> Outcome | None:
        low = session.extracted_seq
        high = min(session.message_count, low + self._settings.extract_max_messages)
        async with self._postgres.connection() as conn:
            messages = await session_store.messages_between(
                conn,
                user_id=job.user_id,
                session_id=job.session_id,
                after_seq=low,
                through_seq=high,
                cipher=self._cipher,
            )
        target = Target(
            user_id=job.user_id,
            session_id=job.session_id,
            agent_id=session.agent_id,
            actor=job.id,
        )
        try:
            return await self._attempt(job, messages, target, watermark=(low, high))
        except _Raced:
            log.info("job %s: another attempt extracted seqs %d..%d first", job.id, low + 1, high)
            return None

    # -- jobs given their messages -----------------------------------------------

    async def _run_messages_job(self, user_id: str, job_id: str) -> Outcome | None:
        async with self._postgres.connection() as conn, conn.transaction():
            job = await extraction_store.get_job(
                conn, user_id=user_id, job_id=job_id, for_update=True
            )
            if job is None or job.state in (JobState.SUCCEEDED, JobState.FAILED):
                return None  # done by an earlier attempt
            raw = await extraction_store.job_messages(
                conn, user_id=user_id, job_id=job_id, cipher=self._cipher
            )
            await extraction_store.start(
                conn,
                user_id=user_id,
                job_id=job_id,
                extractor=self._extractor.name,
                seqs=None,
                message_count=len(raw),
            )
        job = _with_attempt(job)
        target = Target(user_id=user_id, session_id="", agent_id="", actor=job_id)
        try:
            return await self._attempt(job, decode_messages(raw), target, watermark=None)
        except _Raced:
            return None

    # -- one attempt -------------------------------------------------------------

    async def _attempt(
        self,
        job: Job,
        messages: Sequence[StoredMessage],
        target: Target,
        *,
        watermark: tuple[int, int] | None,
    ) -> Outcome:
        started = time.perf_counter()
        candidates = []
        if messages:
            try:
                async with asyncio.timeout(self._settings.extract_timeout.total_seconds()):
                    candidates = await self._extractor.extract(messages)
            except (ExtractionFailed, TimeoutError) as exc:
                return await self._failed(job, self._describe(exc))
        vectors = await self._reconciler.embed(candidates)
        user_id = job.user_id
        async with self._postgres.connection() as conn, conn.transaction():
            current = await extraction_store.get_job(
                conn, user_id=user_id, job_id=job.id, for_update=True
            )
            if current is None or current.state is not JobState.RUNNING:
                raise _Raced
            if watermark is not None:
                moved = await extraction_store.advance_watermark(
                    conn,
                    user_id=user_id,
                    session_id=job.session_id,
                    from_seq=watermark[0],
                    to_seq=watermark[1],
                )
                if not moved:
                    raise _Raced
            decisions = await self._reconciler.apply(
                conn, target=target, candidates=candidates, vectors=vectors
            )
            counts = Counts.of(decisions)
            await extraction_store.succeed(conn, user_id=user_id, job_id=job.id, counts=counts)
        log.info(
            "job %s: %d messages -> %d candidates: %d added, %d updated, %d deleted, "
            "%d unchanged (%.2fs, %s)",
            job.id,
            len(messages),
            len(candidates),
            counts.created,
            counts.updated,
            counts.deleted,
            counts.noop,
            time.perf_counter() - started,
            self._extractor.name,
        )
        return Outcome(job.id, JobState.SUCCEEDED, counts, len(messages))

    def _describe(self, exc: BaseException) -> str:
        name = self._extractor.name
        if isinstance(exc, TimeoutError):
            limit = self._settings.extract_timeout.total_seconds()
            return f"extractor {name} did not answer within {limit:g}s"
        return f"extractor {name} failed: {exc}"

    async def _failed(self, job: Job, error: str) -> Outcome:
        """Record the failure; FAILED after the last try, else RetryLater."""
        tries = self._settings.extract_max_tries
        final = job.attempts >= tries
        message = error if final else f"attempt {job.attempts} of {tries} failed: {error}"
        async with self._postgres.connection() as conn, conn.transaction():
            await extraction_store.set_error(
                conn, user_id=job.user_id, job_id=job.id, error=message, final=final
            )
        if not final:
            delay = self._settings.extract_retry_delay.total_seconds() * job.attempts
            raise RetryLater(message, delay_s=delay)
        log.warning("job %s failed after %d attempts: %s", job.id, job.attempts, error)
        return Outcome(job.id, JobState.FAILED, Counts(), 0)


def _with_attempt(job: Job) -> Job:
    """The job as start() left it: one more attempt."""
    return replace(job, attempts=job.attempts + 1, state=JobState.RUNNING)
