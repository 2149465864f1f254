"""Running a real arq worker inside a test process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from arq.worker import Worker

from workers.context import WorkerState, install_state
from workers.settings import worker_settings


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Stop a worker started with `asyncio.create_task(worker.async_run())`.

    arq's close() cancels the jobs in flight and then re-raises their
    cancellation out of its gather; jobs are idempotent (a cancelled one is
    rerun), so that cancellation is expected here, not a failure.
    """
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()
    # close() re-raises that cancellation before it closes its Redis pool;
    # left open, the pool's connections surface as ResourceWarnings in
    # whichever later test the garbage collector happens to run.
    if worker._pool is not None:
        await worker._pool.aclose(close_connection_pool=True)
        worker._pool = None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def worker_with_state(state: WorkerState) -> AsyncIterator[None]:
    """A real arq worker in this process on state.settings' queue, running its
    jobs with `state` (resources, extractor, metrics) rather than opening its
    own; the caller owns and closes those."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        install_state(ctx, state)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        pass

    worker = Worker(
        **{
            **worker_settings(state.settings),
            "on_startup": on_startup,
            "on_shutdown": on_shutdown,
            "handle_signals": False,
        }
    )
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        await stop_worker(worker, task)
