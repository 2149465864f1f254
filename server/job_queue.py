"""The one module that enqueues arq jobs, and the queue's name.

Job ids are deterministic, so a job enqueued twice while the first is queued
or running is enqueued once (arq refuses a duplicate id).
"""

from __future__ import annotations

from arq.connections import ArqRedis

# The one place arq's key names are chosen; server and workers use the same queue.
QUEUE_NAME = "memoryd:v1:queue"
HEALTH_CHECK_KEY = f"{QUEUE_NAME}:health-check"

EMBED_MEMORIES = "embed_memories"


async def enqueue_embedding(arq: ArqRedis, memory_ids: list[str]) -> None:
    """Ask a worker to embed these memories.

    One job per call, named by its first id: the job embeds every unembedded
    row, not only these, so a job for one batch covers any other that lost the
    race; the ids are carried for the logs.
    """
    if not memory_ids:
        return
    await arq.enqueue_job(
        EMBED_MEMORIES,
        memory_ids=memory_ids,
        _job_id=f"embed:{memory_ids[0]}",
        _queue_name=QUEUE_NAME,
    )
