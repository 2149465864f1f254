"""kill -9 of Valkey, which comes back empty (no persistence: the worst case)
with the session windows and the queued jobs it held: calls that need it fail
UNAVAILABLE, acknowledged writes survive, windows are rebuilt from Postgres and
the lost jobs are queued again by the worker's sweeps."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable

import grpc
import pytest

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import session_service_pb2 as spb
from tests.crash.conftest import (
    CALL_DEADLINE_S,
    NOT_SERVING,
    SERVING,
    CrashStack,
    eventually,
    semantic,
    wait_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.crash, pytest.mark.timeout(300)]

USER = "crash-valkey"
OUTAGE_S = 6
FACTS = [
    "I live in Lisbon.",
    "My favourite food is ramen.",
    "I work as a nurse.",
    "I have a dog called Pixel.",
]


def _message(content: str) -> spb.Message:
    return spb.Message(role="user", content=content)


async def test_valkey_killed_and_back_empty_loses_no_acknowledged_write(
    crash_stack: CrashStack,
) -> None:
    sessions, memories = crash_stack.sessions, crash_stack.memories
    window = [f"message {i}" for i in range(30)]
    for content in window:
        await sessions.AppendMessages(
            spb.AppendMessagesRequest(
                user_id=USER, session_id="window", messages=[_message(content)]
            )
        )
    await sessions.AppendMessages(
        spb.AppendMessagesRequest(
            user_id=USER, session_id="facts", messages=[_message(f) for f in FACTS]
        )
    )
    # The worker is frozen (SIGSTOP), so the jobs below wait in Valkey's queue
    # when it dies.
    worker = crash_stack.worker
    worker.signal(signal.SIGSTOP)
    try:
        created = await memories.BatchCreateMemories(
            mpb.BatchCreateMemoriesRequest(
                user_id=USER,
                requests=[
                    mpb.CreateMemoryRequest(memory=semantic(f"queued memory {i}"))
                    for i in range(20)
                ],
            )
        )
        job = (
            await memories.ExtractMemories(
                mpb.ExtractMemoriesRequest(user_id=USER, session_id="facts")
            )
        ).job
        crash_stack.valkey.kill()
    finally:
        worker.signal(signal.SIGCONT)

    try:
        calls: dict[str, Awaitable[object]] = {
            "AppendMessages": sessions.AppendMessages(
                spb.AppendMessagesRequest(
                    user_id=USER, session_id="window", messages=[_message("during")]
                ),
                timeout=CALL_DEADLINE_S,
            ),
            "GetHistory": sessions.GetHistory(
                spb.GetHistoryRequest(user_id=USER, session_id="window"), timeout=CALL_DEADLINE_S
            ),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (name, caught.value)
        await crash_stack.wait_health(NOT_SERVING)
        # Long-term memory needs only Postgres: the write is acknowledged and
        # its embed job, which could not be queued, is left to the sweep.
        during = await memories.CreateMemory(
            mpb.CreateMemoryRequest(user_id=USER, memory=semantic("written during the outage")),
            timeout=CALL_DEADLINE_S,
        )
        # An outage of some seconds: the worker polls the dead Valkey, its
        # crons come due and fail.
        await asyncio.sleep(OUTAGE_S)
    finally:
        crash_stack.valkey.start()

    await crash_stack.wait_health(SERVING)
    history = await eventually(
        lambda: sessions.GetHistory(
            spb.GetHistoryRequest(user_id=USER, session_id="window", last_messages=100),
            timeout=CALL_DEADLINE_S,
        )
    )
    assert [m.content for m in history.messages] == window
    assert [m.seq for m in history.messages] == list(range(1, 31))
    await sessions.AppendMessages(
        spb.AppendMessagesRequest(user_id=USER, session_id="window", messages=[_message("after")]),
        timeout=CALL_DEADLINE_S,
    )
    history = await sessions.GetHistory(
        spb.GetHistoryRequest(user_id=USER, session_id="window", last_messages=100)
    )
    assert [m.content for m in history.messages] == [*window, "after"]

    # The jobs Valkey lost: embedding by the sweep, extraction queued again.
    ready = await crash_stack.wait_all_ready(USER)
    ids = {m.id for m in ready}
    assert {m.id for m in created.memories} | {during.memory.id} <= ids
    done = await wait_job(crash_stack, USER, job.id)
    assert done.state == mpb.JOB_STATE_SUCCEEDED, done
    assert done.created_count >= len(FACTS) - 1
    # The worker lived through the outage (it polled on, it did not exit).
    worker.assert_running()
    assert "Redis is unreachable" in worker.log()
