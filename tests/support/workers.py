"""Running a real arq worker inside a test process."""

from __future__ import annotations

import asyncio
import contextlib

from arq.worker import Worker


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
