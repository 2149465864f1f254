"""kill -9 of `memoryd worker` in the middle of embedding and of an extraction
job: a new worker finishes both, the killed extraction job is retried, and its
result is the same as that of a run nobody interrupted (no duplicates)."""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg
import pytest

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import session_service_pb2 as spb
from tests.crash.conftest import (
    CALL_DEADLINE_S,
    WORKER_READY,
    CrashStack,
    semantic,
    wait_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.crash, pytest.mark.timeout(400)]

BASELINE_USER = "crash-worker-baseline"
USER = "crash-worker"
EMBED_USER = "crash-worker-embed"
EMBED_ROWS = 500
# Statements about the user that the local extractor turns into memories,
# many of them: the job must still be RUNNING when the test sees it.
FACTS = [
    "I live in {city}.",
    "My favourite food is {food}.",
    "I work as a {job}.",
    "I have a {pet} called {name}.",
    "I am learning to play the {instrument}.",
    "My sister lives in {city} too.",
    "I prefer {food} over pizza for dinner.",
    "I go hiking in the {place} every weekend.",
]
WORDS = {
    "city": ["Lisbon", "Oslo", "Kyoto", "Lima", "Porto"],
    "food": ["ramen", "paella", "dumplings", "tacos", "curry"],
    "job": ["nurse", "teacher", "welder", "pilot", "chemist"],
    "pet": ["dog", "cat", "parrot", "rabbit", "turtle"],
    "name": ["Pixel", "Mango", "Rusty", "Olive", "Biscuit"],
    "instrument": ["cello", "banjo", "violin", "drums", "flute"],
    "place": ["Alps", "dunes", "forest", "hills", "canyon"],
}


def _transcript() -> list[spb.Message]:
    messages = []
    for index in range(200):
        template = FACTS[index % len(FACTS)]
        values = {key: words[index % len(words)] for key, words in WORDS.items()}
        messages.append(
            spb.Message(role="user", content=f"{template.format(**values)} (note {index})")
        )
    return messages


async def _extract(stack: CrashStack, user_id: str) -> str:
    await stack.sessions.AppendMessages(
        spb.AppendMessagesRequest(user_id=user_id, session_id="talk", messages=_transcript()),
        timeout=CALL_DEADLINE_S,
    )
    reply = await stack.memories.ExtractMemories(
        mpb.ExtractMemoriesRequest(user_id=user_id, session_id="talk"), timeout=CALL_DEADLINE_S
    )
    return reply.job.id


async def _wait_running(stack: CrashStack, user_id: str, job_id: str) -> None:
    async with asyncio.timeout(120):
        while True:
            reply = await stack.memories.GetJob(
                mpb.GetJobRequest(user_id=user_id, id=job_id), timeout=CALL_DEADLINE_S
            )
            assert reply.job.state in (mpb.JOB_STATE_QUEUED, mpb.JOB_STATE_RUNNING), reply.job
            if reply.job.state == mpb.JOB_STATE_RUNNING:
                return
            await asyncio.sleep(0.01)


async def _attempts(stack: CrashStack, job_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(stack.postgres.url) as conn:
        cursor = await conn.execute("SELECT attempts FROM extraction_jobs WHERE id = %s", (job_id,))
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _events(stack: CrashStack, user_id: str) -> list[tuple[str, int]]:
    """(memory id, op) of every event of the user's memories."""
    async with await psycopg.AsyncConnection.connect(stack.postgres.url) as conn:
        cursor = await conn.execute(
            "SELECT memory_id::text, op FROM memory_events WHERE user_id = %s", (user_id,)
        )
        return [(str(memory_id), int(op)) for memory_id, op in await cursor.fetchall()]


def _contents(memories: list[mpb.Memory]) -> list[tuple[int, str, str]]:
    return sorted((m.kind, m.key, m.content) for m in memories)


async def test_worker_killed_mid_jobs_finishes_them_after_restart_without_duplicates(
    crash_stack: CrashStack,
) -> None:
    # What an uninterrupted run makes of the transcript.
    baseline_job = await wait_job(
        crash_stack, BASELINE_USER, await _extract(crash_stack, BASELINE_USER)
    )
    assert baseline_job.state == mpb.JOB_STATE_SUCCEEDED, baseline_job
    baseline = await crash_stack.wait_all_ready(BASELINE_USER)
    assert baseline_job.created_count == len(baseline) > 0

    # Embedding and extraction in flight together; kill the worker once the
    # extraction job is RUNNING.
    created = await crash_stack.memories.BatchCreateMemories(
        mpb.BatchCreateMemoriesRequest(
            user_id=EMBED_USER,
            requests=[
                mpb.CreateMemoryRequest(memory=semantic(f"backlog memory {i} about topic {i % 7}"))
                for i in range(EMBED_ROWS)
            ],
        ),
        timeout=CALL_DEADLINE_S,
    )
    job_id = await _extract(crash_stack, USER)
    await _wait_running(crash_stack, USER, job_id)
    crash_stack.worker.kill()

    embedded = [
        m for m in await crash_stack.all_memories(EMBED_USER) if m.state == mpb.MEMORY_STATE_READY
    ]
    assert len(embedded) < EMBED_ROWS, "the worker had embedded everything before the kill"
    job = await crash_stack.memories.GetJob(mpb.GetJobRequest(user_id=USER, id=job_id))
    assert job.job.state == mpb.JOB_STATE_RUNNING, "the job finished before the kill"

    crash_stack.worker.start()
    await asyncio.to_thread(crash_stack.worker.wait_for_log, WORKER_READY)
    done = await wait_job(crash_stack, USER, job_id)
    assert done.state == mpb.JOB_STATE_SUCCEEDED, done
    assert await _attempts(crash_stack, job_id) == 2  # the killed attempt, then the retry
    extracted = await crash_stack.wait_all_ready(USER)
    assert _contents(extracted) == _contents(baseline)
    assert done.created_count == baseline_job.created_count
    # The killed attempt recorded nothing: one ADD per memory, and the same
    # history as the uninterrupted run's.
    events = await _events(crash_stack, USER)
    adds = Counter(memory_id for memory_id, op in events if op == mpb.MEMORY_OP_ADD)
    assert set(adds.values()) == {1}
    assert len(adds) == len(extracted)
    baseline_events = await _events(crash_stack, BASELINE_USER)
    assert Counter(op for _, op in events) == Counter(op for _, op in baseline_events)

    ready = await crash_stack.wait_all_ready(EMBED_USER)
    assert sorted(m.id for m in ready) == sorted(m.id for m in created.memories)
