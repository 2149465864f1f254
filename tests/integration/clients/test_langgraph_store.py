"""MemorydStore, LangGraph's BaseStore over memoryd, through the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from langgraph.store.base import InvalidNamespaceError, Item

from memoryd.client import AsyncMemoryClient
from memoryd.integrations.langgraph import MemorydStore
from server.api.app import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
async def store(server: RunningServer, indexing: None) -> AsyncIterator[MemorydStore]:
    opened = MemorydStore(server.address, client_options={"timeout": 30})
    yield opened
    await opened.aclose()
    opened.close()


async def test_put_get_update_delete(store: MemorydStore, user_id: str) -> None:
    namespace = (user_id, "preferences")
    await store.aput(namespace, "food", {"likes": ["ramen", "tacos"], "spicy": 3})
    item = await store.aget(namespace, "food")
    assert isinstance(item, Item)
    assert item.value == {"likes": ["ramen", "tacos"], "spicy": 3}
    assert isinstance(item.value["spicy"], int)  # values read back exactly
    assert (item.namespace, item.key) == (namespace, "food")
    created = item.created_at

    await store.aput(namespace, "food", {"likes": ["pho"], "spicy": 5})
    updated = await store.aget(namespace, "food")
    assert updated is not None and updated.value == {"likes": ["pho"], "spicy": 5}
    assert updated.created_at == created and updated.updated_at > created
    assert await store.aget((user_id, "other"), "food") is None  # keys are per namespace

    await store.adelete(namespace, "food")
    assert await store.aget(namespace, "food") is None
    await store.adelete(namespace, "food")  # deleting twice is no error


async def test_search_by_query_filter_and_prefix(store: MemorydStore, user_id: str) -> None:
    await store.abatch([])  # an empty batch is fine
    await store.aput((user_id, "memories"), "1", {"text": "Plays the cello every evening"})
    await store.aput((user_id, "memories"), "2", {"text": "Allergic to shellfish", "level": 3})
    await store.aput((user_id, "memories", "work"), "3", {"text": "Works night shifts", "level": 1})
    await store.aput((user_id, "hidden"), "4", {"text": "cello lessons"}, index=False)
    client = AsyncMemoryClient(store._address)
    async with client:  # let the worker embed them, so the query is answered by meaning
        await client.memories.search("x", user_id=user_id, wait_for_index=True, timeout=30)

    hits = await store.asearch((user_id,), query="which instrument does she play?", limit=2)
    assert hits[0].key == "1" and hits[0].score is not None and hits[0].score > 0
    assert all(hit.key != "4" for hit in hits)  # index=False: never found by a query

    under_work = await store.asearch((user_id, "memories", "work"))
    assert [(h.namespace, h.key) for h in under_work] == [((user_id, "memories", "work"), "3")]
    assert {h.key for h in await store.asearch((user_id, "memories"))} == {"1", "2", "3"}
    assert {h.key for h in await store.asearch((user_id,))} == {"1", "2", "3", "4"}

    high = await store.asearch((user_id,), filter={"level": {"$gte": 2}})
    assert [h.key for h in high] == ["2"]
    exact = await store.asearch((user_id, "memories"), filter={"level": 1})
    assert [h.key for h in exact] == ["3"]
    page = await store.asearch((user_id, "memories"), limit=1, offset=1)
    assert len(page) == 1


async def test_list_namespaces(store: MemorydStore, user_id: str) -> None:
    for namespace in [(user_id, "a"), (user_id, "a", "x"), (user_id, "b", "x")]:
        await store.aput(namespace, "k", {"v": 1})
    assert await store.alist_namespaces(prefix=(user_id,)) == [
        (user_id, "a"),
        (user_id, "a", "x"),
        (user_id, "b", "x"),
    ]
    assert await store.alist_namespaces(prefix=(user_id,), max_depth=2) == [
        (user_id, "a"),
        (user_id, "b"),
    ]
    assert await store.alist_namespaces(prefix=(user_id, "a")) == [
        (user_id, "a"),
        (user_id, "a", "x"),
    ]
    assert await store.alist_namespaces(prefix=(user_id,), suffix=("x",)) == [
        (user_id, "a", "x"),
        (user_id, "b", "x"),
    ]
    assert await store.alist_namespaces(prefix=(user_id, "*", "x")) == [
        (user_id, "a", "x"),
        (user_id, "b", "x"),
    ]
    with pytest.raises(InvalidNamespaceError, match="does not name a user"):
        await store.alist_namespaces()  # memoryd never lists across users


async def test_users_are_kept_apart_and_a_fixed_user_works(
    server: RunningServer, store: MemorydStore, user_id: str
) -> None:
    await store.aput((user_id, "notes"), "k", {"v": "mine"})
    assert await store.aget((f"{user_id}-other", "notes"), "k") is None
    # With a fixed user, every namespace is that user's, whatever its labels.
    fixed = MemorydStore(server.address, user_id=f"{user_id}-fixed")
    try:
        await fixed.aput(("notes",), "k", {"v": "fixed"})
        assert (await fixed.aget(("notes",), "k")).value == {"v": "fixed"}  # type: ignore[union-attr]
        assert await fixed.alist_namespaces() == [("notes",)]
    finally:
        await fixed.aclose()


def sync_round_trip(store: MemorydStore, user_id: str) -> None:
    store.put((user_id, "sync"), "a", {"text": "Likes hiking in the Alps"}, ttl=60)
    item = store.get((user_id, "sync"), "a")
    assert item is not None and item.value == {"text": "Likes hiking in the Alps"}
    assert [h.key for h in store.search((user_id, "sync"))] == ["a"]
    hits = store.search((user_id,), query="hiking")
    assert [h.key for h in hits] == ["a"]
    assert store.list_namespaces(prefix=(user_id,)) == [(user_id, "sync")]
    store.delete((user_id, "sync"), "a")
    assert store.get((user_id, "sync"), "a") is None
    with pytest.raises(InvalidNamespaceError):
        store.search((), query="anything")


async def test_sync_methods(store: MemorydStore, user_id: str) -> None:
    await asyncio.to_thread(sync_round_trip, store, user_id)
