"""Job and cron functions. Each is idempotent and carries ids, not payloads."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from arq.worker import Retry

from server.extraction.models import Trigger
from server.extraction.runner import ExtractionRunner, RetryLater
from server.extraction.sweep import ExtractionSweep
from server.memories import MemoryService
from server.rekey import Rekeyer
from server.sessions import SessionService
from server.stores import STORE_DOWN_ERRORS
from server.stores.memory_store import MemoryStore
from workers.context import job_info, worker_metrics, worker_state

log = logging.getLogger(__name__)

# Claim-embed-write loops per embed job (see embed_memories).
EMBED_LANES = 2


async def purge_idle_sessions(ctx: dict[str, Any]) -> None:
    """Delete every user's sessions idle longer than settings.session_retention.

    Safe to cancel or rerun: deletion goes in batches, each its own transaction,
    so a cancelled run (worker stopping) leaves the rest for the next one.
    """
    state = worker_state(ctx)
    retention = state.settings.session_retention
    if not retention:  # 0 keeps sessions forever
        return
    cutoff = datetime.now(UTC) - retention
    deleted = await SessionService(state.resources).delete_sessions_before(
        cutoff, user_id=None, all_users=True
    )
    log.info("purged %d sessions idle since before %s", deleted, cutoff.isoformat())


async def embed_memories(ctx: dict[str, Any], *, memory_ids: list[str] | None = None) -> int:
    """Embed every row without a vector of the model in use; return how many.

    `memory_ids` only names what the enqueuer wrote (for the logs): the job
    drains the whole backlog, so a rerun or a duplicate finds nothing to do.
    Each batch is claimed (FOR UPDATE SKIP LOCKED), embedded in one model call
    and written in one transaction, so workers share the backlog without
    overlap and a cancelled run loses at most its current batches.
    """
    state = worker_state(ctx)
    embedder = state.resources.embedder
    store = MemoryStore(embedding_model=embedder.model_name, cipher=state.resources.cipher)
    batch_size = state.settings.embedding_batch_size

    async def drain() -> int:
        done = 0
        while True:
            async with state.resources.postgres.connection() as conn, conn.transaction():
                claimed = await store.claim_unembedded(conn, limit=batch_size)
                if not claimed:
                    return done
                vectors = await embedder.embed_array_async([content for _, content in claimed])
                await store.set_embeddings(
                    conn, ids=[memory_id for memory_id, _ in claimed], vectors=vectors
                )
            done += len(claimed)
            log.info("embedded %d memories with %s", len(claimed), embedder.model_name)

    # EMBED_LANES loops at once: the model runs one batch at a time (the
    # Embedder's lock), and while it does, another lane claims the next batch
    # or writes and commits the last one, so the cores never wait on Postgres.
    try:
        async with asyncio.TaskGroup() as lanes:
            tasks = [lanes.create_task(drain()) for _ in range(EMBED_LANES)]
    except ExceptionGroup as group:
        # A lane's failure (Postgres gone...) is the job's: raised as itself,
        # as a one-loop job would, not wrapped in a group.
        raise group.exceptions[0] from group
    total = sum(task.result() for task in tasks)
    if total or memory_ids:
        log.info("embedding done: %d rows (job for %d ids)", total, len(memory_ids or []))
    return total


async def sweep_unembedded(ctx: dict[str, Any]) -> int:
    """Cron: embed rows whose job was lost (Redis restarted, worker killed)."""
    return await embed_memories(ctx)


async def purge_expired_memories(ctx: dict[str, Any]) -> int:
    """Cron: delete expired memories, recording a DELETE event for each."""
    total = await MemoryService(worker_state(ctx).resources).purge_expired()
    if total:
        log.info("purged %d expired memories", total)
    return total


async def extract_memories(
    ctx: dict[str, Any],
    *,
    user_id: str,
    session_id: str = "",
    job_id: str = "",
    trigger: str = Trigger.API,
) -> int:
    """Extract a session's new messages (its open jobs, or one created for an
    automatic trigger), or one job's own messages; return the jobs finished.

    Safe to retry and to kill: each attempt commits its memories, counts and
    watermark in one transaction or nothing (server.extraction.runner).
    """
    state = worker_state(ctx)
    if state.extractor is None:
        raise RuntimeError("this worker has no extractor (WorkerState.extractor)")
    runner = ExtractionRunner(state.resources, state.extractor)
    metrics = worker_metrics(ctx)
    try:
        outcomes = await runner.run(
            user_id=user_id, session_id=session_id, job_id=job_id, trigger=Trigger(trigger)
        )
    except RetryLater as exc:
        log.info("extraction %s: %s; retrying in %.0fs", job_info(ctx).job_id, exc, exc.delay_s)
        if metrics is not None:
            metrics.extraction_jobs.labels("retried").inc()
        raise Retry(defer=exc.delay_s) from exc
    except STORE_DOWN_ERRORS as exc:
        # Postgres (or Redis) is down: nothing was committed. Without a retry
        # arq would drop the job, and a job row left RUNNING would wait for
        # the sweep's running grace (most of an hour).
        info = job_info(ctx)
        delay = state.settings.extract_retry_delay.total_seconds() * info.job_try
        log.warning(
            "extraction %s: a store is unavailable (%s); retrying in %.0fs", info.job_id, exc, delay
        )
        if metrics is not None:
            metrics.extraction_jobs.labels("retried").inc()
        raise Retry(defer=delay) from exc
    if metrics is not None:
        for outcome in outcomes:
            metrics.extraction_jobs.labels(outcome.state.name.lower()).inc()
            for op in ("created", "updated", "deleted", "noop"):
                metrics.extraction_decisions.labels(op).inc(getattr(outcome.counts, op))
    return len(outcomes)


async def extract_idle_sessions(ctx: dict[str, Any]) -> int:
    """Cron: extract sessions idle with messages not yet extracted, and
    enqueue again jobs whose enqueue was lost; return how many were enqueued."""
    return await ExtractionSweep(worker_state(ctx).resources).run()


async def rekey_data(ctx: dict[str, Any]) -> int:
    """`memoryd rekey --background`: seal everything with the first key (see
    server.rekey; idempotent, so a retry continues where a run stopped)."""
    state = worker_state(ctx)
    settings = state.settings
    assert settings.postgres_url is not None  # a worker always has its stores
    rekeyer = Rekeyer(
        postgres_url=settings.postgres_url,
        redis_url=settings.redis_url,
        cipher=state.resources.cipher,
        report=lambda line: log.info("rekey: %s", line),
    )
    result = await rekeyer.run()
    return sum(result.resealed.values())
