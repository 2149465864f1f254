"""Embedding and expiry jobs on the real embedded Postgres, with the real model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from server.embedding import EMBEDDING_DIMENSION
from server.memories import MemoryService
from server.memory_models import (
    MemoryDraft,
    MemoryFilter,
    MemoryKind,
    MemoryOp,
    SearchMode,
    SearchQuery,
)
from server.resources import Resources
from server.search import MemorySearch
from server.stores.memory_store import MemoryStore, vector_literal
from workers import jobs
from workers.context import WorkerState, install_state


def _ctx(resources: Resources) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    install_state(ctx, WorkerState(settings=resources.settings, resources=resources))
    return ctx


def _store(resources: Resources) -> MemoryStore:
    return MemoryStore(embedding_model=resources.embedder.model_name)


async def _insert(resources: Resources, user_id: str, *drafts: MemoryDraft) -> list[str]:
    async with resources.postgres.connection() as conn, conn.transaction():
        return [
            (await _store(resources).insert(conn, user_id=user_id, draft=draft)).id
            for draft in drafts
        ]


async def _embedding_rows(resources: Resources, ids: list[str]) -> list[tuple[Any, ...]]:
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute(
            "SELECT embedding_model, vector_dims(embedding), embedding::text FROM memories"
            " WHERE id = ANY(%s::uuid[]) ORDER BY content",
            (ids,),
        )
        return await cursor.fetchall()


async def test_embed_job_embeds_new_rows_with_the_configured_model(
    resources: Resources, user_id: str
) -> None:
    ids = await _insert(
        resources,
        user_id,
        *(
            MemoryDraft(kind=MemoryKind.SEMANTIC, content=f"likes hiking, note {i}")
            for i in range(3)
        ),
    )
    # The job drains every unembedded row, including other tests' leftovers.
    assert await jobs.embed_memories(_ctx(resources), memory_ids=ids[:1]) >= 3
    rows = await _embedding_rows(resources, ids)
    assert [(model, dims) for model, dims, _ in rows] == [
        (resources.embedder.model_name, EMBEDDING_DIMENSION)
    ] * 3
    async with resources.postgres.connection() as conn:
        assert await _store(resources).count_unindexed(conn, user_id=user_id) == 0


async def test_a_second_run_finds_nothing_to_do(resources: Resources, user_id: str) -> None:
    ids = await _insert(
        resources, user_id, MemoryDraft(kind=MemoryKind.SEMANTIC, content="owns a cat")
    )
    await jobs.embed_memories(_ctx(resources), memory_ids=ids)
    before = await _embedding_rows(resources, ids)
    assert await jobs.embed_memories(_ctx(resources), memory_ids=ids) == 0
    assert await jobs.sweep_unembedded(_ctx(resources)) == 0
    assert await _embedding_rows(resources, ids) == before


async def test_rows_of_another_model_are_embedded_again_after_missing_ones(
    resources: Resources, user_id: str
) -> None:
    """A model change: rows embedded with the previous model stay findable by
    keyword while the workers embed them again, after rows with no vector."""
    stale = await _insert(
        resources,
        user_id,
        MemoryDraft(kind=MemoryKind.SEMANTIC, content="plays the violin in a quartet"),
        MemoryDraft(kind=MemoryKind.SEMANTIC, content="grows tomatoes on the balcony"),
    )
    async with resources.postgres.connection() as conn:
        await conn.execute(
            "UPDATE memories SET embedding = %s::vector, embedding_model = 'previous-model'"
            " WHERE id = ANY(%s::uuid[])",
            (vector_literal([1.0] * EMBEDDING_DIMENSION), stale),
        )
    [missing] = await _insert(
        resources, user_id, MemoryDraft(kind=MemoryKind.SEMANTIC, content="owns a red bicycle")
    )
    search = MemorySearch(resources, MemoryService(resources))

    async def found(text: str, mode: SearchMode) -> list[str]:
        query = SearchQuery(text, limit=5, mode=mode, filter=MemoryFilter())
        hits = await search.search(
            user_id=user_id, query=query, wait_for_index=False, time_left=None
        )
        return [hit.memory.id for hit in hits]

    assert await found("violin quartet", SearchMode.HYBRID) == [stale[0]]
    assert stale[0] not in await found("violin quartet", SearchMode.SEMANTIC)

    async with resources.postgres.connection() as conn, conn.transaction(force_rollback=True):
        claimed = [id_ for id_, _ in await _store(resources).claim_unembedded(conn, limit=1000)]
    assert claimed.index(missing) < min(claimed.index(id_) for id_ in stale)

    assert await jobs.embed_memories(_ctx(resources)) >= 3
    rows = await _embedding_rows(resources, [*stale, missing])
    assert {model for model, _, _ in rows} == {resources.embedder.model_name}
    assert (await found("violin quartet", SearchMode.SEMANTIC))[0] == stale[0]


async def test_expired_memories_are_deleted_with_a_delete_event(
    resources: Resources, user_id: str
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    future = datetime.now(UTC) + timedelta(days=1)
    expired, live = await _insert(
        resources,
        user_id,
        MemoryDraft(kind=MemoryKind.SEMANTIC, content="was in Paris last week", expire_time=past),
        MemoryDraft(kind=MemoryKind.FACT, key="city", content="lives in Lyon", expire_time=future),
    )
    assert await jobs.purge_expired_memories(_ctx(resources)) >= 1
    store = _store(resources)
    async with resources.postgres.connection() as conn:
        assert await store.count_user_rows(conn, user_id=user_id) == 1
        assert await store.get(conn, user_id=user_id, memory_id=live) is not None
        [event] = await store.events(conn, user_id=user_id, memory_id=expired)
    assert event.op is MemoryOp.DELETE
    assert (event.old_content, event.reason, event.actor) == (
        "was in Paris last week",
        "expired",
        "expiry",
    )
    assert await jobs.purge_expired_memories(_ctx(resources)) == 0


async def test_similar_sentences_are_closer_than_unrelated_ones(resources: Resources) -> None:
    cat, kitten, tax = resources.embedder.embed(
        [
            "The user has a cat named Miso.",
            "They own a kitten called Miso.",
            "Quarterly tax filings are due in April.",
        ]
    )
    assert np.isclose(np.linalg.norm(cat), 1.0, atol=1e-3)
    assert np.dot(cat, kitten) > np.dot(cat, tax) + 0.3
    assert await resources.embedder.embed_query("The user has a cat named Miso.") == cat
