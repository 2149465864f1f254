"""Finding a user's memories by meaning and keyword.

Vector and full-text candidates come from Postgres, each filtered by user and
request filters in SQL, and are fused by reciprocal rank fusion, recency
weighted and joined to their rows in the same statement
(server/stores/search_store.py). Scores are in
0..1 in every mode: cosine similarity (semantic), ts_rank_cd normalised
(keyword), or the fused score over its maximum (hybrid).
"""

from __future__ import annotations

import asyncio
import time

from psycopg.pq import TransactionStatus

from server import validation
from server.errors import DeadlineExceeded, InvalidArgument
from server.memories import MemoryService
from server.memory_models import SearchHit, SearchMode, SearchQuery
from server.resources import Resources
from server.stores import search_store

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
        validation.check_text("query", query.text)
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
        embedding: asyncio.Task[list[float]] | None = None
        if query.mode is not SearchMode.KEYWORD:
            # Started first: the model runs in a thread (ONNX Runtime releases
            # the GIL) while the loop waits for the index and checks out a
            # connection.
            embedding = asyncio.create_task(self._embedder.embed_query(query.text))
        try:
            if wait_for_index:
                await self._wait_for_index(user_id, time_left)
            async with self._postgres.connection() as conn:
                plan = search_store.SearchPlan(
                    user_id=user_id,
                    text=query.text,
                    query_vector=await embedding if embedding else None,
                    model=self._store.embedding_model,
                    mode=query.mode,
                    memory_filter=query.filter,
                    candidates=max(self._settings.search_candidates, query.limit),
                    limit=query.limit,
                    min_score=query.min_score,
                    recency_weight=query.recency_weight,
                    half_life_s=self._settings.recency_half_life.total_seconds(),
                    exact_max_rows=self._settings.exact_search_max_rows,
                )
                # One read-only statement: autocommit spares the BEGIN and
                # COMMIT round trips a transaction block would cost.
                await conn.set_autocommit(True)
                try:
                    found = await search_store.search(conn, plan, cipher=self._store.cipher)
                finally:
                    if conn.pgconn.transaction_status is TransactionStatus.IDLE:
                        await conn.set_autocommit(False)
        except BaseException:
            if embedding is not None:
                # Not left running unobserved when the index wait or the
                # checkout failed first.
                embedding.cancel()
                await asyncio.gather(embedding, return_exceptions=True)
            raise
        return [SearchHit(memory, score) for memory, score in found]

    async def _wait_for_index(self, user_id: str, time_left: float | None) -> None:
        """Return once the user's memories are all embedded; DeadlineExceeded
        if they are not within max_index_wait, or the call's sooner deadline.
        The cap bounds what one waiting call costs the server (a poll a tick)."""
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
                cap = self._settings.max_index_wait.total_seconds()
                raise DeadlineExceeded(
                    f"{pending} of user {user_id!r}'s memories are still being indexed; "
                    f"retry, or allow a longer deadline (waits stop at {cap:g} s, "
                    "MEMORYD_MAX_INDEX_WAIT); is a memoryd worker running?"
                )
            await asyncio.sleep(_INDEX_POLL_S)
