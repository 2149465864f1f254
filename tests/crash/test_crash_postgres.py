"""kill -9 of Postgres: calls fail UNAVAILABLE (never hang), health goes
NOT_SERVING; Postgres restarted on the same data dir runs crash recovery, and
the same memoryd processes serve again with every acknowledged write."""

from __future__ import annotations

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
)

pytestmark = [pytest.mark.e2e, pytest.mark.crash, pytest.mark.timeout(300)]

USER = "crash-pg"


def _append(stack: CrashStack, session_id: str, content: str) -> spb.AppendMessagesRequest:
    return spb.AppendMessagesRequest(
        user_id=USER, session_id=session_id, messages=[spb.Message(role="user", content=content)]
    )


async def test_postgres_killed_calls_fail_unavailable_then_recover(
    crash_stack: CrashStack,
) -> None:
    sessions, memories = crash_stack.sessions, crash_stack.memories
    acked = []
    for index in range(5):
        await sessions.AppendMessages(_append(crash_stack, "s", f"before {index}"))
        acked.append(f"before {index}")
    created = await memories.CreateMemory(
        mpb.CreateMemoryRequest(user_id=USER, memory=semantic("likes green tea"), request_id="r1")
    )

    crash_stack.postgres.kill()
    try:
        calls: dict[str, Awaitable[object]] = {
            "AppendMessages": sessions.AppendMessages(
                _append(crash_stack, "s", "during"), timeout=CALL_DEADLINE_S
            ),
            "GetMemory": memories.GetMemory(
                mpb.GetMemoryRequest(user_id=USER, id=created.memory.id), timeout=CALL_DEADLINE_S
            ),
            "CreateMemory": memories.CreateMemory(
                mpb.CreateMemoryRequest(user_id=USER, memory=semantic("during")),
                timeout=CALL_DEADLINE_S,
            ),
            "ListSessions": sessions.ListSessions(
                spb.ListSessionsRequest(user_id=USER), timeout=CALL_DEADLINE_S
            ),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (name, caught.value)
        await crash_stack.wait_health(NOT_SERVING)
    finally:
        crash_stack.postgres.start()

    # The same server process: its pool replaces the broken connections.
    await crash_stack.wait_health(SERVING)
    crash_stack.server.assert_running()
    crash_stack.worker.assert_running()
    history = await eventually(
        lambda: sessions.GetHistory(
            spb.GetHistoryRequest(user_id=USER, session_id="s", last_messages=100),
            timeout=CALL_DEADLINE_S,
        )
    )
    assert [m.content for m in history.messages] == acked
    assert [m.seq for m in history.messages] == [1, 2, 3, 4, 5]
    await sessions.AppendMessages(_append(crash_stack, "s", "after"), timeout=CALL_DEADLINE_S)
    again = await memories.GetMemory(
        mpb.GetMemoryRequest(user_id=USER, id=created.memory.id), timeout=CALL_DEADLINE_S
    )
    assert again.memory.content == "likes green tea"
    # The worker came through too: a memory written now gets embedded.
    await memories.CreateMemory(
        mpb.CreateMemoryRequest(user_id=USER, memory=semantic("owns a bicycle")),
        timeout=CALL_DEADLINE_S,
    )
    ready = await crash_stack.wait_all_ready(USER)
    assert sorted(m.content for m in ready) == ["likes green tea", "owns a bicycle"]
    history = await sessions.GetHistory(
        spb.GetHistoryRequest(user_id=USER, session_id="s", last_messages=100)
    )
    assert [m.content for m in history.messages] == [*acked, "after"]
