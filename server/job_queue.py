"""The one module that enqueues arq jobs, and the queue's name.

Job ids are deterministic, so a job enqueued twice while the first is queued
or running is enqueued once (arq refuses a duplicate id).
"""

from __future__ import annotations

import asyncio

from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from server import deadlines, tracing
from server.request_context import NO_REQUEST, request_id_var

# The one place arq's key names are chosen; server and workers use the same queue.
QUEUE_NAME = "memoryd:v1:queue"
HEALTH_CHECK_KEY = f"{QUEUE_NAME}:health-check"

EMBED_MEMORIES = "embed_memories"
EXTRACT_MEMORIES = "extract_memories"
REKEY_DATA = "rekey_data"

# The job kwarg that carries the enqueuing call's request id and trace context
# to the worker (workers/instrument.py takes it off before the job runs).
TELEMETRY_KWARG = "telemetry"
REQUEST_ID_KEY = "request_id"


def job_telemetry() -> dict[str, str]:
    """What a job takes from the call that enqueues it: its request id and,
    with tracing on, its trace context."""
    carried: dict[str, str] = {}
    request_id = request_id_var.get()
    if request_id != NO_REQUEST:
        carried[REQUEST_ID_KEY] = request_id
    active = tracing.active()
    if active is not None:
        active.inject(carried)
    return carried


async def enqueue_embedding(arq: ArqRedis, memory_ids: list[str]) -> None:
    """Ask a worker to embed these memories.

    One job per call, named by its first id: the job embeds every unembedded
    row, not only these, so a job for one batch covers any other that lost the
    race; the ids are carried for the logs.
    """
    if not memory_ids:
        return
    # Within the call's deadline: a TimeoutError leaves the job to the sweep.
    async with asyncio.timeout(deadlines.time_left_at_least(0)):
        await arq.enqueue_job(
            EMBED_MEMORIES,
            memory_ids=memory_ids,
            telemetry=job_telemetry(),
            _job_id=f"embed:{memory_ids[0]}",
            _queue_name=QUEUE_NAME,
        )


def extraction_job_id(*, user_id: str, session_id: str, job_id: str = "") -> str:
    """One arq job per session, so triggers that arrive while one is queued
    coalesce; a job given its own messages is its own. The user id is
    length-prefixed: ids may hold ':' and two sessions must never share a name."""
    if session_id:
        return f"extract:{len(user_id)}:{user_id}:{session_id}"
    return f"extract:job:{job_id}"


async def enqueue_extraction(
    arq: ArqRedis, *, user_id: str, session_id: str = "", job_id: str = "", trigger: str = "api"
) -> bool:
    """Ask a worker to extract a session's new messages (or one job's own
    messages). False when that session's job is already queued or running:
    the running one picks up what arrived after it started (see
    server.extraction.runner)."""
    async with asyncio.timeout(deadlines.time_left_at_least(0)):
        job = await arq.enqueue_job(
            EXTRACT_MEMORIES,
            user_id=user_id,
            session_id=session_id,
            job_id=job_id,
            trigger=trigger,
            telemetry=job_telemetry(),
            _job_id=extraction_job_id(user_id=user_id, session_id=session_id, job_id=job_id),
            _queue_name=QUEUE_NAME,
        )
    return job is not None


async def extraction_held(
    arq: ArqRedis, *, user_id: str, session_id: str = "", job_id: str = ""
) -> bool:
    """Whether arq still holds that extraction job, queued or running (its
    job key lives until the job ends). One EXISTS: cheaper than an enqueue's
    WATCH/MULTI transaction, which the sweep would otherwise run for every
    long-running job on every pass."""
    key = job_key_prefix + extraction_job_id(user_id=user_id, session_id=session_id, job_id=job_id)
    return bool(await arq.exists(key))


async def enqueue_rekey(arq: ArqRedis) -> bool:
    """Ask a worker to run `memoryd rekey` (server.rekey) in the background.
    False when one is already queued or running."""
    job = await arq.enqueue_job(REKEY_DATA, _job_id="rekey", _queue_name=QUEUE_NAME)
    return job is not None
