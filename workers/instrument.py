"""What wraps every job: the enqueuing call's request id in the job's log
lines, a span when tracing is on, and duration and outcome metrics when the
worker serves metrics."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from arq.worker import Retry, RetryJob

from server import tracing
from server.job_queue import QUEUE_NAME, REQUEST_ID_KEY, TELEMETRY_KWARG
from server.metrics import STORE_SCRAPE_TIMEOUT_S, MetricsEndpoint, StoreGauges, WorkerMetrics
from server.request_context import NO_REQUEST, request_id_var
from server.resources import Resources
from server.stores.memory_store import pending_embeddings
from workers.context import worker_metrics

T = TypeVar("T")
Job = Callable[..., Coroutine[Any, Any, T]]

# Outcomes of one attempt, as arq treats them (arq.worker.Worker.run_job).
SUCCEEDED, FAILED, RETRIED, CANCELLED = "succeeded", "failed", "retried", "cancelled"


def instrumented(job: Job[T], *, name: str | None = None) -> Job[T]:
    """`job` taking the `telemetry` kwarg the server adds (server.job_queue):
    its request id is current while the job runs (its log lines carry it) and
    its trace context is the parent of the job's span."""
    job_name = name or job.__name__

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> T:
        carried: dict[str, str] = kwargs.pop(TELEMETRY_KWARG, None) or {}
        request_id = carried.get(REQUEST_ID_KEY, NO_REQUEST)
        # arq runs each job in a task of its own: this stays within the job.
        request_id_var.set(request_id)
        metrics = worker_metrics(ctx)
        active = tracing.active()
        started = time.perf_counter()
        outcome = FAILED
        try:
            if active is None:
                result = await job(ctx, *args, **kwargs)
            else:
                with active.job_span(
                    job_name,
                    carried,
                    request_id=request_id,
                    job_id=str(ctx.get("job_id", "")),
                    job_try=int(ctx.get("job_try", 1)),
                ):
                    result = await job(ctx, *args, **kwargs)
            outcome = SUCCEEDED
            return result
        except (Retry, RetryJob):
            outcome = RETRIED
            raise
        except asyncio.CancelledError:
            outcome = CANCELLED
            raise
        finally:
            if metrics is not None:
                metrics.job_duration.labels(job_name).observe(time.perf_counter() - started)
                metrics.jobs.labels(job_name, outcome).inc()

    return run


def start_worker_metrics(
    address: str, resources: Resources
) -> tuple[WorkerMetrics, MetricsEndpoint]:
    """Serve the worker's metrics on `address`; the store gauges are read on
    the running loop (the worker's) at each scrape."""
    metrics = WorkerMetrics(resources.postgres)
    metrics.watch_stores(asyncio.get_running_loop(), functools.partial(read_stores, resources))
    return metrics, MetricsEndpoint.start(address, metrics.registry)


async def read_stores(resources: Resources) -> StoreGauges:
    async with asyncio.timeout(STORE_SCRAPE_TIMEOUT_S):
        depth = await resources.arq.zcard(QUEUE_NAME)
        async with resources.postgres.connection() as conn:
            pending, oldest = await pending_embeddings(conn)
    return StoreGauges(queue_depth=int(depth), pending_embeddings=pending, oldest_pending=oldest)
