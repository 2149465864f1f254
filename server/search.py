"""Finding a user's memories by meaning and keyword.

Vector and full-text candidates come from Postgres, each filtered by user and
request filters in SQL, and are fused by reciprocal rank fusion. Scores are in
0..1 in every mode: cosine similarity (semantic), ts_rank_cd normalised
(keyword), or the fused score over its maximum (hybrid).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

from server import validation
from server.errors import DeadlineExceeded, InvalidArgument
from server.memories import MemoryService
from server.memory_models import SearchHit, SearchMode, SearchQuery
from server.resources import Resources
from server.stores import search_store
from server.stores.search_store import Candidate

# The usual constant of reciprocal rank fusion: ranks past the first few
# matter less, and neither signal dominates.
RRF_K = 60
DEFAULT_LIMIT = 10
_INDEX_POLL_S = 0.02


class MemorySearch:
    def __init__(self, resources: Resources, memories: MemoryService) -> None:
        self._settings = resources.settings
        self._postgres = resources.postgres
        self._embedder = resources.embedder
        self._memories = memories
        self._store = memories.store

    def check(self, user_id: str, query: SearchQuery) -> SearchQuery:
        validation.require_user_id(user_id, max_length=self._settings.max_id_length)
        if not query.text.strip():
            raise InvalidArgument("query", "must not be empty")
        if len(query.text.encode()) > self._settings.max_memory_bytes:
            raise InvalidArgument(
                "query", f"is longer than {self._settings.max_memory_bytes} bytes"
            )
        limit = query.limit or DEFAULT_LIMIT
        validation.require_positive("limit", limit, maximum=self._settings.max_search_limit)
        if not 0 <= query.min_score <= 1:
            raise InvalidArgument("min_score", "must be between 0 and 1")
        if not 0 <= query.recency_weight <= 1:
            raise InvalidArgument("recency_weight", "must be between 0 and 1")
        self._memories.check_filter(query.filter, field="")
        return SearchQuery(
            text=query.text,
            limit=limit,
            mode=query.mode,
            filter=query.filter,
            min_score=query.min_score,
            recency_weight=query.recency_weight,
        )

    async def search(
        self,
        *,
        user_id: str,
        query: SearchQuery,
        wait_for_index: bool,
        time_left: float | None,
    ) -> list[SearchHit]:
        query = self.check(user_id, query)
        if wait_for_index:
            await self._wait_for_index(user_id, time_left)
        candidates = max(self._settings.search_candidates, query.limit)
        semantic: list[Candidate] = []
        keyword: list[Candidate] = []
        if query.mode is not SearchMode.KEYWORD:
            vector = await self._embedder.embed_query(query.text)
        async with self._postgres.connection() as conn, conn.transaction():
            if query.mode is not SearchMode.KEYWORD:
                rows = await search_store.user_row_count(
                    conn, user_id=user_id, cap=self._settings.exact_search_max_rows
                )
                semantic = await search_store.vector_candidates(
                    conn,
                    user_id=user_id,
                    model=self._store.embedding_model,
                    query_vector=vector,
                    memory_filter=query.filter,
                    limit=candidates,
                    exact=rows <= self._settings.exact_search_max_rows,
                )
            if query.mode is not SearchMode.SEMANTIC:
                keyword = await search_store.keyword_candidates(
                    conn,
                    user_id=user_id,
                    text=query.text,
                    memory_filter=query.filter,
                    limit=candidates,
                )
            # Ranked before any whole row is read: only the winners are fetched.
            scores = self._final_scores(query, semantic, keyword)
            best = sorted(scores, key=scores.__getitem__, reverse=True)[: query.limit]
            memories = await self._store.get_many(conn, user_id=user_id, memory_ids=best)
        hits = [SearchHit(memory, scores[memory.id]) for memory in memories]
        hits.sort(key=lambda hit: hit.score, reverse=True)
        return hits

    def _final_scores(
        self, query: SearchQuery, semantic: list[Candidate], keyword: list[Candidate]
    ) -> dict[str, float]:
        """Fused, recency-weighted scores of the candidates at or above min_score."""
        scores = _fuse(query.mode, semantic, keyword)
        if query.recency_weight:
            created = {id_: time for id_, _, time in (*semantic, *keyword)}
            now = datetime.now(UTC)
            half_life = self._settings.recency_half_life.total_seconds()
            for id_, score in scores.items():
                age = max((now - created[id_]).total_seconds(), 0.0)
                freshness = math.pow(0.5, age / half_life)
                weight = query.recency_weight
                scores[id_] = score * ((1 - weight) + weight * freshness)
        return {id_: score for id_, score in scores.items() if score >= query.min_score}

    async def _wait_for_index(self, user_id: str, time_left: float | None) -> None:
        """Return once the user's memories are all embedded; DeadlineExceeded
        if they are not before the call's deadline (or max_index_wait)."""
        budget = self._settings.max_index_wait.total_seconds()
        if time_left is not None:
            budget = min(budget, time_left - 0.05)  # leave time to search and answer
        deadline = time.monotonic() + budget
        while True:
            async with self._postgres.connection() as conn:
                pending = await self._store.count_unindexed(conn, user_id=user_id)
            if not pending:
                return
            if time.monotonic() + _INDEX_POLL_S > deadline:
                raise DeadlineExceeded(
                    f"{pending} of user {user_id!r}'s memories are still being indexed; "
                    "retry, or allow a longer deadline (is a memoryd worker running?)"
                )
            await asyncio.sleep(_INDEX_POLL_S)


def _fuse(
    mode: SearchMode, semantic: list[Candidate], keyword: list[Candidate]
) -> dict[str, float]:
    if mode is SearchMode.SEMANTIC:
        return {id_: max(similarity, 0.0) for id_, similarity, _ in semantic}
    if mode is SearchMode.KEYWORD:
        return {id_: rank for id_, rank, _ in keyword}
    fused: dict[str, float] = {}
    for candidates in (semantic, keyword):
        for rank, (id_, _, _) in enumerate(candidates, start=1):
            fused[id_] = fused.get(id_, 0.0) + 1 / (RRF_K + rank)
    best = 2 / (RRF_K + 1)  # first in both lists
    return {id_: score / best for id_, score in fused.items()}
