"""arq worker configuration, built from Settings, and the function that runs it.

Built per process from the Settings the entry point read (no import-time
settings), so `WorkerSettings` is a dict here rather than arq's usual class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import func

from server.embedding import Embedder
from server.extraction.candidates import Extractor
from server.extraction.factory import build_extractor
from server.extraction.runner import run_timeout
from server.job_queue import (
    EMBED_MEMORIES,
    EXTRACT_MEMORIES,
    HEALTH_CHECK_KEY,
    QUEUE_NAME,
    REKEY_DATA,
)
from server.resources import Resources
from server.settings import Settings
from workers import jobs
from workers.context import WorkerState, install_state, take_state
from workers.instrument import instrumented, start_worker_metrics
from workers.lease import JobLeases
from workers.worker import MemorydWorker

__all__ = ["HEALTH_CHECK_KEY", "QUEUE_NAME", "run", "worker_settings"]

# Job defaults; a job that needs other limits says so in its func()/cron().
JOB_TIMEOUT = timedelta(minutes=5)
PURGE_TIMEOUT = timedelta(minutes=30)
# A rekey goes through every row; one cut short is continued by its retry.
REKEY_TIMEOUT = timedelta(hours=6)
# A sweep finding a backlog (after a model change, every row) runs until it is done;
# the next sweep, or an embed job, picks up where a timed-out one stopped.
EMBED_TIMEOUT = timedelta(minutes=30)
# Every 10 s: a write whose embed job was lost becomes searchable within that.
SWEEP_SECONDS = set(range(0, 60, 10))
# Jobs one worker runs at once. Embedding takes every core it is given
# (settings.embedding_threads) and the Embedder runs one model call at a time,
# so more concurrency only lets DB-bound jobs (purges) overlap with it.
MAX_JOBS = 4
# Extraction of idle sessions, and of jobs whose enqueue was lost: every 5 s,
# so a conversation that stops is extracted within settings.extract_idle plus
# this. One indexed query (sessions_unextracted) when there is nothing to do.
EXTRACT_SWEEP_SECONDS = set(range(0, 60, 5))
# arq retries beyond the job's own tries: a worker killed mid-job is retried
# by arq, and such a retry must not count against the extractor's failures
# (the job row counts attempts and fails the job after settings.extract_max_tries).
_EXTRACT_EXTRA_TRIES = 3

ExtractorFactory = Callable[[Settings, Embedder], Extractor]


def worker_settings(
    settings: Settings, *, make_extractor: ExtractorFactory = build_extractor
) -> dict[str, Any]:
    """Keyword arguments for arq's Worker."""
    if not settings.redis_url:
        raise ValueError("settings.redis_url is required to run a worker")

    async def on_startup(ctx: dict[str, Any]) -> None:
        resources = await Resources.open(settings)
        try:
            await resources.check_keys_at_start()
            extractor = await asyncio.to_thread(make_extractor, settings, resources.embedder)
            address = settings.worker_metrics_address()
            metrics, endpoint = (
                start_worker_metrics(address, resources) if address else (None, None)
            )
        except BaseException:
            await resources.close()
            raise
        install_state(
            ctx,
            WorkerState(
                settings=settings,
                resources=resources,
                extractor=extractor,
                metrics=metrics,
                metrics_endpoint=endpoint,
            ),
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        state = take_state(ctx)
        if state is not None:
            if state.metrics_endpoint is not None:
                await asyncio.to_thread(state.metrics_endpoint.stop)
            if state.extractor is not None:
                await state.extractor.aclose()
            await state.resources.close()

    leases = JobLeases(settings.job_lease)

    return {
        "functions": [
            # keep_result=0: the job id (embed:<first id>) can be enqueued again at
            # once, e.g. when that memory's content changes.
            func(
                instrumented(jobs.embed_memories, name=EMBED_MEMORIES),
                name=EMBED_MEMORIES,
                keep_result=0,
                timeout=EMBED_TIMEOUT,
            ),
            # keep_result=0: a session's job id is free again the moment its run ends.
            func(
                instrumented(jobs.extract_memories, name=EXTRACT_MEMORIES),
                name=EXTRACT_MEMORIES,
                keep_result=0,
                timeout=run_timeout(settings),
                max_tries=settings.extract_max_tries + _EXTRACT_EXTRA_TRIES,
            ),
            func(jobs.rekey_data, name=REKEY_DATA, keep_result=0, timeout=REKEY_TIMEOUT),
        ],
        "cron_jobs": [
            # unique: with several workers, each run happens once.
            cron(
                instrumented(jobs.purge_idle_sessions),
                minute=0,
                unique=True,
                timeout=PURGE_TIMEOUT,
            ),
            cron(
                instrumented(jobs.sweep_unembedded),
                second=SWEEP_SECONDS,
                unique=True,
                timeout=EMBED_TIMEOUT,
                run_at_startup=True,
            ),
            cron(
                instrumented(jobs.purge_expired_memories),
                second=0,
                unique=True,
                timeout=PURGE_TIMEOUT,
            ),
            cron(
                instrumented(jobs.extract_idle_sessions),
                second=EXTRACT_SWEEP_SECONDS,
                unique=True,
                timeout=PURGE_TIMEOUT,
            ),
        ],
        "max_jobs": MAX_JOBS,
        "queue_name": QUEUE_NAME,
        "health_check_key": HEALTH_CHECK_KEY,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        # A running job's lease (workers.lease): retried soon after its worker dies.
        "on_job_start": leases.on_job_start,
        "on_job_end": leases.on_job_end,
        "job_timeout": JOB_TIMEOUT,
        # arq's own SIGINT/SIGTERM handlers cancel running jobs and stop at once;
        # jobs are idempotent, so a cancelled one is simply retried or rerun.
        "handle_signals": True,
    }


def run(settings: Settings) -> None:
    """Run a worker until SIGINT or SIGTERM."""
    # Worker() looks up the current event loop in its constructor (to add signal
    # handlers); give it a fresh one explicitly rather than rely on the deprecated
    # implicit creation in asyncio.get_event_loop().
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        MemorydWorker(job_lease=settings.job_lease, **worker_settings(settings)).run()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
