"""arq worker configuration, built from Settings, and the function that runs it.

Built per process from the Settings the entry point read (no import-time
settings), so `WorkerSettings` is a dict here rather than arq's usual class.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker

from server.resources import Resources
from server.settings import Settings
from workers import jobs
from workers.context import WorkerState, install_state, take_state

# The one place arq's key names are chosen; the server enqueues to the same queue.
QUEUE_NAME = "memoryd:v1:queue"
HEALTH_CHECK_KEY = f"{QUEUE_NAME}:health-check"

# Job defaults; a job that needs other limits says so in its func()/cron().
JOB_TIMEOUT = timedelta(minutes=5)
PURGE_TIMEOUT = timedelta(minutes=30)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for arq's Worker."""
    if not settings.redis_url:
        raise ValueError("settings.redis_url is required to run a worker")

    async def on_startup(ctx: dict[str, Any]) -> None:
        install_state(ctx, WorkerState(settings=settings, resources=await Resources.open(settings)))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        state = take_state(ctx)
        if state is not None:
            await state.resources.close()

    return {
        "functions": [],
        "cron_jobs": [
            # unique: with several workers, each hour's run happens once.
            cron(jobs.purge_idle_sessions, minute=0, unique=True, timeout=PURGE_TIMEOUT),
        ],
        "queue_name": QUEUE_NAME,
        "health_check_key": HEALTH_CHECK_KEY,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
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
        Worker(**worker_settings(settings)).run()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
