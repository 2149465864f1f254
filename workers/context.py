"""One typed view of arq's untyped `ctx` dict.

arq hands every job and hook a plain dict. Jobs read it only through the
accessors here, so a missing or mistyped entry fails loudly in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.extraction.candidates import Extractor
from server.resources import Resources
from server.settings import Settings

if TYPE_CHECKING:
    from server.metrics import MetricsEndpoint, WorkerMetrics

# Our entry in ctx; arq's own keys (redis, job_id, job_try, ...) stay as arq sets them.
_STATE_KEY = "memoryd"


@dataclass(frozen=True)
class WorkerState:
    """What on_startup builds once per worker process and every job shares."""

    settings: Settings
    resources: Resources
    # The one extractor this worker runs (server.extraction.factory); None in
    # tests of jobs that extract nothing.
    extractor: Extractor | None = None
    # With settings.worker_metrics_address(): what jobs count, and where it is served.
    metrics: WorkerMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None


@dataclass(frozen=True)
class JobInfo:
    """arq's per-job entries."""

    job_id: str
    job_try: int


def install_state(ctx: MutableMapping[str, Any], state: WorkerState) -> None:
    ctx[_STATE_KEY] = state


def worker_state(ctx: Mapping[str, Any]) -> WorkerState:
    state = ctx.get(_STATE_KEY)
    if not isinstance(state, WorkerState):
        raise RuntimeError("worker state missing from ctx: on_startup did not run or failed")
    return state


def take_state(ctx: MutableMapping[str, Any]) -> WorkerState | None:
    """Remove and return the state, or None if on_startup never set it (it failed)."""
    state = ctx.pop(_STATE_KEY, None)
    return state if isinstance(state, WorkerState) else None


def worker_metrics(ctx: Mapping[str, Any]) -> WorkerMetrics | None:
    """The worker's metrics, or None when it keeps none (or before on_startup)."""
    state = ctx.get(_STATE_KEY)
    return state.metrics if isinstance(state, WorkerState) else None


def job_info(ctx: Mapping[str, Any]) -> JobInfo:
    return JobInfo(job_id=str(ctx["job_id"]), job_try=int(ctx["job_try"]))
