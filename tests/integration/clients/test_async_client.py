"""AsyncMemoryClient end to end: every method against the real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memoryd.client import AsyncMemoryClient, Message, NotFound, kind_name
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import session_service_pb2 as spb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_sessions_append_dicts_and_messages_then_read_history(
    client: AsyncMemoryClient, user_id: str
) -> None:
    stored = await client.sessions.append(
        user_id,
        "trip",
        [
            {"role": "user", "content": "I want to visit Lisbon", "id": "m1", "run_id": "r1"},
            Message(role="assistant", content="When?", run_id="r1"),
            {"role": "user", "content": "In May", "run_id": "r2", "metadata": {"mood": "happy"}},
        ],
        agent_id="planner",
    )
    assert [m.seq for m in stored] == [1, 2, 3]
    assert stored[0].id == "m1" and stored[1].id  # the server assigns missing ids
    history = await client.sessions.history(user_id, "trip")
    assert [(m.role, m.content) for m in history] == [
        ("user", "I want to visit Lisbon"),
        ("assistant", "When?"),
        ("user", "In May"),
    ]
    assert dict(history[2].metadata) == {"mood": "happy"}
    assert [m.content for m in await client.sessions.history(user_id, "trip", last_messages=1)] == [
        "In May"
    ]
    last_run = await client.sessions.history(user_id, "trip", last_runs=1)
    assert [m.content for m in last_run] == ["In May"]
    budget = await client.sessions.history(user_id, "trip", max_tokens=history[2].token_count)
    assert [m.content for m in budget] == ["In May"]
    with pytest.raises(ValueError, match="at most one"):
        await client.sessions.history(user_id, "trip", last_messages=1, max_tokens=5)


async def test_sessions_list_delete_clear_and_clear_before(
    client: AsyncMemoryClient, user_id: str
) -> None:
    for session_id in ("a", "b", "c"):
        await client.sessions.append(user_id, session_id, [{"role": "user", "content": "hi"}])
    listed = await client.sessions.list(user_id)
    assert sorted(s.session_id for s in listed) == ["a", "b", "c"]
    await client.sessions.delete(user_id, "a")
    with pytest.raises(NotFound):
        await client.sessions.delete(user_id, "a")
    assert await client.sessions.history(user_id, "a") == []
    # Nothing is older than an hour; everything is older than a minute from now.
    assert await client.sessions.clear_before(timedelta(hours=1), user_id) == 0
    cutoff = datetime.now(UTC) + timedelta(minutes=1)
    assert await client.sessions.clear_before(cutoff, user_id) == 2
    await client.sessions.append(user_id, "d", [{"role": "user", "content": "hello again"}])
    assert await client.sessions.clear(user_id) == 1
    assert await client.sessions.list(user_id) == []


async def test_memories_add_get_fact_update_history_delete(
    client: AsyncMemoryClient, user_id: str
) -> None:
    semantic = await client.memories.add(
        user_id, "Alice is allergic to peanuts", topics=["health"], metadata={"source": "chat"}
    )
    assert kind_name(semantic.kind) == "semantic" and semantic.topics == ["health"]
    assert dict(semantic.metadata) == {"source": "chat"}
    fact = await client.memories.add(user_id, "Lives in Berlin", key="home_city", ttl=3600)
    assert kind_name(fact.kind) == "fact" and fact.HasField("expire_time")
    assert (await client.memories.get_fact(user_id, "home_city")).id == fact.id
    assert (await client.memories.get(user_id, semantic.id)).content == semantic.content

    moved = await client.memories.add(user_id, "Lives in Lisbon", key="home_city")
    assert moved.id == fact.id and moved.content == "Lives in Lisbon"
    updated = await client.memories.update(
        user_id, semantic.id, content="Alice is allergic to peanuts and shellfish", reason="fix"
    )
    assert updated.content.endswith("shellfish") and updated.topics == ["health"]  # untouched
    retagged = await client.memories.update(user_id, semantic.id, topics=[], metadata={"v": 2})
    assert list(retagged.topics) == [] and dict(retagged.metadata) == {"v": 2}
    events = await client.memories.history(user_id, semantic.id)
    assert [e.op for e in events] == [mpb.MEMORY_OP_ADD, mpb.MEMORY_OP_UPDATE, mpb.MEMORY_OP_UPDATE]
    assert events[1].reason == "fix"

    await client.memories.delete(user_id, semantic.id, reason="obsolete")
    with pytest.raises(NotFound):
        await client.memories.get(user_id, semantic.id)
    assert (await client.memories.history(user_id, semantic.id))[-1].op == mpb.MEMORY_OP_DELETE
    with pytest.raises(ValueError, match="at least one field"):
        await client.memories.update(user_id, fact.id)


async def test_memories_search_list_all_pages_and_clear(
    client: AsyncMemoryClient, user_id: str
) -> None:
    await client.memories.add(user_id, "Bob plays the cello in an orchestra", topics=["music"])
    await client.memories.add(user_id, "Bob's favourite food is ramen", topics=["food"])
    await client.memories.add(user_id, "Works as a nurse", key="job")
    hits = await client.memories.search(
        "what instrument does Bob play?", user_id=user_id, limit=2, wait_for_index=True
    )
    assert hits[0].memory.content == "Bob plays the cello in an orchestra"
    assert hits[0].score >= hits[-1].score > 0
    facts = await client.memories.search("works", user_id=user_id, kinds=["fact"], mode="keyword")
    assert [h.memory.key for h in facts] == ["job"]
    food = await client.memories.search("food", user_id=user_id, topics=["food"])
    assert [h.memory.content for h in food] == ["Bob's favourite food is ramen"]

    # More than one ListMemories page (1000 a page) is followed to the end.
    many = [f"note number {i}" for i in range(1100)]
    await _batch_add(client, user_id, many)
    everything = await client.memories.get_user_memories(user_id)
    assert len(everything) == 1103 and len({m.id for m in everything}) == 1103
    only_music = await client.memories.get_user_memories(user_id, topics=["music"])
    assert [m.content for m in only_music] == ["Bob plays the cello in an orchestra"]
    only_facts = await client.memories.get_user_memories(user_id, kinds=[mpb.MEMORY_KIND_FACT])
    assert [m.key for m in only_facts] == ["job"]
    assert await client.memories.clear(user_id) == 1103
    assert await client.memories.get_user_memories(user_id) == []


async def _batch_add(client: AsyncMemoryClient, user_id: str, contents: list[str]) -> None:
    """Store many memories quickly through the raw stub (BatchCreateMemories)."""
    from memoryd.v1 import memory_service_pb2_grpc as mgrpc

    stub = mgrpc.MemoryServiceStub(client.channel)
    for start in range(0, len(contents), 500):
        await stub.BatchCreateMemories(
            mpb.BatchCreateMemoriesRequest(
                user_id=user_id,
                requests=[
                    mpb.CreateMemoryRequest(
                        memory=mpb.Memory(kind=mpb.MEMORY_KIND_SEMANTIC, content=content)
                    )
                    for content in contents[start : start + 500]
                ],
            ),
            timeout=60,
        )


async def test_messages_must_be_a_list_of_known_fields(
    client: AsyncMemoryClient, user_id: str
) -> None:
    with pytest.raises(ValueError, match="unknown field"):
        await client.sessions.append(user_id, "s", [{"role": "user", "text": "hi"}])
    with pytest.raises(TypeError, match="list of messages"):
        await client.sessions.append(user_id, "s", spb.Message(role="user", content="x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        await client.memories.add(user_id, "x", kind="episodic")
