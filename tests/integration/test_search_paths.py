"""SearchMemories' single statement on both vector paths (exact per-user scan
and HNSW with an iterative scan), against brute force computed here: filters,
expiry, user scoping, modes, min_score, limit and recency weighting."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from server.memories import MemoryService
from server.memory_models import (
    Memory,
    MemoryDraft,
    MemoryFilter,
    MemoryKind,
    SearchMode,
    SearchQuery,
)
from server.resources import Resources
from server.search import MemorySearch
from server.stores import search_store
from server.stores.memory_store import vector_literal
from server.stores.search_store import HNSW_SESSION_OPTIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SEMANTIC = MemoryKind.SEMANTIC
FACT = MemoryKind.FACT

# (content, kind, key, topics, agent, session)
ROWS: list[tuple[str, MemoryKind, str, list[str], str, str]] = [
    ("Alice moved to Lisbon last spring", SEMANTIC, "", ["home"], "a1", "s1"),
    ("Alice's favourite food is grilled sardines", SEMANTIC, "", ["food"], "a1", "s1"),
    ("Alice is preparing for a job interview at a bank", SEMANTIC, "", ["work"], "a2", "s1"),
    ("She rents a flat near the river in Lisbon", SEMANTIC, "", ["home"], "a2", "s2"),
    ("Alice cooks spicy curry on Sundays", SEMANTIC, "", ["food"], "a1", "s2"),
    ("Her manager at the bank is called Marco", SEMANTIC, "", ["work"], "a1", "s2"),
    ("Alice plays the cello in an amateur orchestra", SEMANTIC, "", ["hobby"], "a2", "s3"),
    ("She is allergic to peanuts and shellfish", SEMANTIC, "", ["health", "food"], "a2", "s3"),
    ("Alice runs five kilometres every morning", SEMANTIC, "", ["health"], "a1", "s3"),
    ("Her sister Beatriz lives in Porto", SEMANTIC, "", ["family"], "a2", "s1"),
    ("home_city: Lisbon", FACT, "home_city", ["home"], "a1", "s1"),
    ("employer: a bank in Lisbon", FACT, "employer", ["work"], "a2", "s2"),
]
QUERIES = ["Where does she live?", "what does she like to eat", "Lisbon bank", "family"]


@pytest.fixture
def service(resources: Resources) -> MemoryService:
    return MemoryService(resources)


@contextlib.asynccontextmanager
async def searcher(
    resources: Resources, service: MemoryService, *, hnsw: bool
) -> AsyncIterator[MemorySearch]:
    """Search on the exact path, or on the HNSW path: every user counts as
    large, and the planner, left to itself on a table this small, would
    rather sort than walk the index, so sorting and plain scans are priced
    out for that pool's connections."""
    if not hnsw:
        yield MemorySearch(resources, service)
        return
    settings = resources.settings.model_copy(update={"exact_search_max_rows": 0})
    options = f"{HNSW_SESSION_OPTIONS} -c enable_sort=off -c enable_seqscan=off"
    assert settings.postgres_url is not None
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
        settings.postgres_url, min_size=1, max_size=2, kwargs={"options": options}, open=False
    )
    await pool.open(wait=True)
    try:
        yield MemorySearch(
            dataclasses.replace(resources, settings=settings, postgres=pool), service
        )
    finally:
        await pool.close()


@pytest.fixture(params=[False, True], ids=["exact", "hnsw"])
async def search(
    request: pytest.FixtureRequest, resources: Resources, service: MemoryService
) -> AsyncIterator[MemorySearch]:
    """MemorySearch on one vector path, checked to be the path its plan takes."""
    hnsw: bool = request.param
    assert await uses_hnsw(resources, service, hnsw=hnsw) == hnsw
    async with searcher(resources, service, hnsw=hnsw) as opened:
        yield opened


async def uses_hnsw(resources: Resources, service: MemoryService, *, hnsw: bool) -> bool:
    """Whether the semantic statement's plan walks the HNSW index.

    The probe user owns one row, added and rolled back here: for a user with
    no rows the planner may put that user's (empty) rows on the outer side of
    the final join, and then the search side never runs on either path."""
    user_id = "probe-user"
    query = SearchQuery("x", limit=5, mode=SearchMode.SEMANTIC, filter=MemoryFilter())
    plan = search_store.SearchPlan(
        user_id=user_id,
        text=query.text,
        query_vector=[1.0] + [0.0] * 383,
        model="m",
        mode=query.mode,
        memory_filter=query.filter,
        candidates=50,
        limit=5,
        min_score=0.0,
        recency_weight=0.0,
        half_life_s=1.0,
        exact_max_rows=-1 if hnsw else 20_000,  # -1: even a user with one row is large
    )
    sql, params = search_store.search_sql(plan)
    options = f"{HNSW_SESSION_OPTIONS} -c enable_sort=off -c enable_seqscan=off"
    assert resources.settings.postgres_url is not None
    async with (
        await AsyncConnection.connect(
            resources.settings.postgres_url, options=options if hnsw else ""
        ) as conn,
        conn.transaction(force_rollback=True),
    ):
        await service.store.insert(
            conn, user_id=user_id, draft=MemoryDraft(SEMANTIC, "the probe's one row")
        )
        cursor = await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        row = await cursor.fetchone()
        assert row is not None
    return _walks_index(row[0][0]["Plan"])


def _walks_index(node: dict[str, Any]) -> bool:
    """True when an executed (loops > 0) node scans memories_embedding."""
    if node.get("Index Name") == "memories_embedding" and node.get("Actual Loops", 0) > 0:
        return True
    return any(_walks_index(child) for child in node.get("Plans", []))


async def stored(
    resources: Resources, service: MemoryService, user_id: str
) -> dict[str, tuple[Memory, list[float]]]:
    """The user's memories (one of them aged 60 days, one expired), embedded.

    Written through the store in one transaction, embedded here: no embedding
    job is queued, so no worker of another test holds these rows later."""
    drafts = [
        MemoryDraft(kind, content, key=key, topics=topics, agent_id=agent, session_id=session)
        for content, kind, key, topics, agent, session in ROWS
    ]
    vectors = resources.embedder.embed([draft.content for draft in drafts])
    store = service.store
    async with resources.postgres.connection() as conn, conn.transaction():
        created = [await store.insert(conn, user_id=user_id, draft=draft) for draft in drafts]
        other = MemoryDraft(SEMANTIC, "Bob lives in Lisbon and works at a bank")
        created_other = await store.insert(conn, user_id=user_id + "-other", draft=other)
        [other_vector] = resources.embedder.embed([other.content])
        for memory, vector in [*zip(created, vectors, strict=True), (created_other, other_vector)]:
            await conn.execute(
                "UPDATE memories SET embedding = %s::vector, embedding_model = %s WHERE id = %s",
                (vector_literal(vector), store.embedding_model, memory.id),
            )
        await conn.execute(
            "UPDATE memories SET create_time = now() - interval '60 days' WHERE id = %s",
            (created[0].id,),
        )
        await conn.execute(
            "UPDATE memories SET expire_time = now() - interval '1 second' WHERE id = %s",
            (created[-1].id,),
        )
    live = created[:-1]
    async with resources.postgres.connection() as conn:
        fresh = await service.store.get_many(
            conn, user_id=user_id, memory_ids=[memory.id for memory in live]
        )
    by_id = {memory.id: memory for memory in fresh}
    return {
        memory.id: (by_id[memory.id], vector)
        for memory, vector in zip(live, vectors[:-1], strict=True)
    }


def matches(memory: Memory, memory_filter: MemoryFilter) -> bool:
    return (
        (not memory_filter.kinds or memory.kind in memory_filter.kinds)
        and (not memory_filter.topics or bool(set(memory.topics) & set(memory_filter.topics)))
        and (not memory_filter.agent_id or memory.agent_id == memory_filter.agent_id)
        and (not memory_filter.session_id or memory.session_id == memory_filter.session_id)
        and (
            memory_filter.created_after is None or memory.create_time >= memory_filter.created_after
        )
        and (
            memory_filter.created_before is None
            or memory.create_time < memory_filter.created_before
        )
    )


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


FILTERS = [
    MemoryFilter(),
    MemoryFilter(kinds=[FACT]),
    MemoryFilter(topics=["food", "home"]),
    MemoryFilter(agent_id="a2"),
    MemoryFilter(session_id="s2", kinds=[SEMANTIC]),
    MemoryFilter(created_after=datetime.now(UTC) - timedelta(days=1)),
    MemoryFilter(created_before=datetime.now(UTC) - timedelta(days=1)),
]


async def test_semantic_search_is_brute_force_under_every_filter(
    resources: Resources, service: MemoryService, search: MemorySearch, user_id: str
) -> None:
    memories = await stored(resources, service, user_id)
    for text in QUERIES:
        [query_vector] = resources.embedder.embed([text])
        for memory_filter in FILTERS:
            hits = await search.search(
                user_id=user_id,
                query=SearchQuery(text, limit=5, mode=SearchMode.SEMANTIC, filter=memory_filter),
                wait_for_index=False,
                time_left=None,
            )
            similarity = {
                memory.id: max(cosine(vector, query_vector), 0.0)
                for memory, vector in memories.values()
                if matches(memory, memory_filter)
            }
            expected = sorted(similarity.values(), reverse=True)[:5]
            # The same top scores (ties may come in either order), each the
            # found memory's own similarity: the right rows, in order.
            assert [hit.score for hit in hits] == pytest.approx(expected, abs=1e-5), (
                text,
                memory_filter,
            )
            for hit in hits:
                assert hit.score == pytest.approx(similarity[hit.memory.id], abs=1e-5)


@pytest.mark.parametrize("mode", [SearchMode.HYBRID, SearchMode.KEYWORD])
async def test_hybrid_and_keyword_stay_within_the_filter_and_the_user(
    resources: Resources,
    service: MemoryService,
    search: MemorySearch,
    user_id: str,
    mode: SearchMode,
) -> None:
    memories = await stored(resources, service, user_id)
    for memory_filter in FILTERS:
        hits = await search.search(
            user_id=user_id,
            query=SearchQuery("Lisbon bank", limit=20, mode=mode, filter=memory_filter),
            wait_for_index=False,
            time_left=None,
        )
        allowed = {id_ for id_, (memory, _) in memories.items() if matches(memory, memory_filter)}
        found = [hit.memory.id for hit in hits]
        assert set(found) <= allowed, memory_filter
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(0 < score <= 1 for score in scores)
        with_words = {
            id_
            for id_ in allowed
            if {"lisbon", "bank"} & set(memories[id_][0].content.lower().split())
        }
        if mode is SearchMode.KEYWORD:
            assert set(found) == with_words, memory_filter
        else:
            # Every allowed row is a vector candidate (fewer than 50 of them).
            assert set(found) == allowed, memory_filter
    # In hybrid mode a memory first in both lists scores exactly 1.
    if mode is SearchMode.HYBRID:
        [best] = await search.search(
            user_id=user_id,
            query=SearchQuery("grilled sardines", limit=1, mode=mode, filter=MemoryFilter()),
            wait_for_index=False,
            time_left=None,
        )
        assert best.memory.content == "Alice's favourite food is grilled sardines"
        assert best.score == pytest.approx(1.0)


async def test_min_score_limit_and_recency(
    resources: Resources, service: MemoryService, user_id: str
) -> None:
    memories = await stored(resources, service, user_id)
    search = MemorySearch(resources, service)

    async def scores(**fields: object) -> dict[str, float]:
        query = SearchQuery(
            "Alice moved to Lisbon", limit=20, mode=SearchMode.SEMANTIC, filter=MemoryFilter()
        )
        hits = await search.search(
            user_id=user_id,
            query=dataclasses.replace(query, **fields),  # type: ignore[arg-type]
            wait_for_index=False,
            time_left=None,
        )
        return {hit.memory.id: hit.score for hit in hits}

    plain = await scores()
    assert len(plain) == len(memories)
    assert len(await scores(limit=3)) == 3
    floor = sorted(plain.values())[len(plain) // 2]
    assert set(await scores(min_score=floor)) == {id_ for id_, s in plain.items() if s >= floor}
    # Full recency weight: a 60-day-old memory (two half-lives) keeps a quarter.
    weighted = await scores(recency_weight=1.0)
    half_life = resources.settings.recency_half_life.total_seconds()
    for id_, score in plain.items():
        age = (datetime.now(UTC) - memories[id_][0].create_time).total_seconds()
        assert weighted[id_] == pytest.approx(score * math.pow(0.5, age / half_life), rel=1e-3)
    [old] = [
        id_ for id_, (memory, _) in memories.items() if memory.content.startswith("Alice moved")
    ]
    assert weighted[old] == pytest.approx(plain[old] / 4, rel=1e-3)


async def test_server_connections_use_iterative_hnsw_scans(resources: Resources) -> None:
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute("SHOW hnsw.iterative_scan")
        assert await cursor.fetchone() == ("relaxed_order",)
        cursor = await conn.execute("SHOW hnsw.ef_search")
        assert await cursor.fetchone() == ("200",)
