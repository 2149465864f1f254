"""kill -9 of `memoryd serve` while clients stream writes: after a restart
every acknowledged message and memory is there, in order, and the clients'
retries (same message ids, same request_id) add no duplicates."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import session_service_pb2 as spb
from tests.crash.conftest import CALL_DEADLINE_S, CrashStack, semantic

pytestmark = [pytest.mark.e2e, pytest.mark.crash, pytest.mark.timeout(400)]

USER = "crash-server"
SESSIONS = 4
MESSAGES = 30  # per session
MEMORIES = 40
KILL_AFTER_ACKS = 40
# Codes a client retries: the server is gone, or died with the call in flight.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
RETRY_DELAY_S = 0.2


class Acks:
    def __init__(self) -> None:
        self.count = 0
        self.reached = asyncio.Event()
        self.messages: dict[str, list[str]] = {}
        self.memories: dict[str, str] = {}  # id -> content

    def add(self) -> None:
        self.count += 1
        if self.count >= KILL_AFTER_ACKS:
            self.reached.set()


async def _append_all(stack: CrashStack, session_id: str, acks: Acks) -> None:
    acked = acks.messages.setdefault(session_id, [])
    for index in range(MESSAGES):
        message_id = f"{session_id}-m{index}"
        request = spb.AppendMessagesRequest(
            user_id=USER,
            session_id=session_id,
            messages=[spb.Message(id=message_id, role="user", content=f"{session_id} #{index}")],
        )
        while True:
            try:
                await stack.sessions.AppendMessages(request, timeout=CALL_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                    break  # the try that died with the server had committed it
                if exc.code() not in RETRYABLE:
                    raise
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            break
        acked.append(message_id)
        acks.add()


async def _create_all(stack: CrashStack, acks: Acks) -> None:
    for index in range(MEMORIES):
        content = f"streamed memory number {index}"
        request = mpb.CreateMemoryRequest(
            user_id=USER, memory=semantic(content), request_id=f"create-{index}"
        )
        while True:
            try:
                reply = await stack.memories.CreateMemory(request, timeout=CALL_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            break
        acks.memories[reply.memory.id] = content
        acks.add()


async def _kill_and_restart(stack: CrashStack, acks: Acks) -> None:
    await acks.reached.wait()
    stack.server.kill()
    stack.server.start()
    await asyncio.to_thread(stack.server.wait_serving)


async def test_server_killed_mid_stream_loses_no_acknowledged_write(
    crash_stack: CrashStack,
) -> None:
    acks = Acks()
    async with asyncio.TaskGroup() as group:
        group.create_task(_kill_and_restart(crash_stack, acks))
        for index in range(SESSIONS):
            group.create_task(_append_all(crash_stack, f"s{index}", acks))
        group.create_task(_create_all(crash_stack, acks))
    assert crash_stack.server.starts == 2  # the kill happened mid-stream

    for session_id, acked in acks.messages.items():
        reply = await crash_stack.sessions.GetHistory(
            spb.GetHistoryRequest(user_id=USER, session_id=session_id, last_messages=1000),
            timeout=CALL_DEADLINE_S,
        )
        assert [m.id for m in reply.messages] == acked
        assert [m.seq for m in reply.messages] == list(range(1, MESSAGES + 1))
        assert [m.content for m in reply.messages] == [
            f"{session_id} #{index}" for index in range(MESSAGES)
        ]
    assert len(acks.memories) == MEMORIES  # a retried request_id gave back the same memory
    for memory_id, content in acks.memories.items():
        memory = await crash_stack.memories.GetMemory(
            mpb.GetMemoryRequest(user_id=USER, id=memory_id), timeout=CALL_DEADLINE_S
        )
        assert memory.memory.content == content
    stored = await crash_stack.wait_all_ready(USER)
    assert sorted(m.id for m in stored) == sorted(acks.memories)
