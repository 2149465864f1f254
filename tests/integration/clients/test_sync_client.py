"""MemoryClient (blocking) end to end. The server shares this test's event
loop, so each blocking scenario runs in a worker thread."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from memoryd.client import InvalidArgument, MemoryClient, Message, NotFound, kind_name
from memoryd.v1 import memory_service_pb2 as mpb
from server.api.app import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def sessions_round_trip(address: str, user_id: str) -> None:
    with MemoryClient(address, timeout=30) as c:
        stored = c.sessions.append(
            user_id,
            "chat",
            [
                {"role": "user", "content": "My name is Ada", "name": "ada"},
                Message(role="assistant", content="Hello Ada"),
            ],
            ttl=600,
        )
        assert [m.seq for m in stored] == [1, 2]
        history = c.sessions.history(user_id, "chat", last_messages=5)
        assert [(m.role, m.name, m.content) for m in history] == [
            ("user", "ada", "My name is Ada"),
            ("assistant", "", "Hello Ada"),
        ]
        assert [s.session_id for s in c.sessions.list(user_id)] == ["chat"]
        c.sessions.append(user_id, "other", [{"role": "user", "content": "x"}])
        c.sessions.delete(user_id, "other")
        assert c.sessions.clear_before(timedelta(days=1), user_id) == 0
        assert c.sessions.clear(user_id) == 1
        with pytest.raises(InvalidArgument) as caught:
            c.sessions.clear_before(timedelta(days=1))  # neither user_id nor all_users
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def memories_round_trip(address: str, user_id: str) -> None:
    with MemoryClient(address, timeout=30) as c:
        fact = c.memories.add(user_id, "Speaks Portuguese", key="language", topics=["profile"])
        assert kind_name(fact.kind) == "fact"
        semantic = c.memories.add(
            user_id, "Ada is training for a marathon in October", kind="semantic"
        )
        hits = c.memories.search(
            "what sport is Ada doing?", user_id=user_id, limit=1, wait_for_index=True
        )
        assert [h.memory.id for h in hits] == [semantic.id] and hits[0].score > 0
        assert c.memories.get_fact(user_id, "language").content == "Speaks Portuguese"
        assert c.memories.get(user_id, semantic.id).state == mpb.MEMORY_STATE_READY
        renamed = c.memories.update(user_id, fact.id, key="spoken_language", ttl=3600)
        assert renamed.key == "spoken_language" and renamed.HasField("expire_time")
        with pytest.raises(NotFound):
            c.memories.get_fact(user_id, "language")
        assert [e.op for e in c.memories.history(user_id, fact.id)] == [
            mpb.MEMORY_OP_ADD,
            mpb.MEMORY_OP_UPDATE,
        ]
        assert {m.id for m in c.memories.get_user_memories(user_id)} == {fact.id, semantic.id}
        c.memories.delete(user_id, semantic.id)
        assert c.memories.clear(user_id) == 1
        with pytest.raises(InvalidArgument) as caught:
            c.memories.get_user_memories("")
        assert caught.value.field == "user_id"


async def test_sync_client_sessions(server: RunningServer, indexing: None, user_id: str) -> None:
    await asyncio.to_thread(sessions_round_trip, server.address, user_id)


async def test_sync_client_memories(server: RunningServer, indexing: None, user_id: str) -> None:
    await asyncio.to_thread(memories_round_trip, server.address, user_id)
