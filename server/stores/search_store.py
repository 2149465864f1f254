"""The two candidate queries of hybrid search, each scoped to one user and
filtered inside SQL. Distances are cosine (`<=>`, vector_cosine_ops)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from server.memory_models import MemoryFilter
from server.stores.memory_store import LIVE, Connection, filter_sql, vector_literal

# (memory id, score, create_time): enough to rank before fetching whole rows.
Candidate = tuple[str, float, datetime]


async def user_row_count(conn: Connection, *, user_id: str, cap: int) -> int:
    """The user's row count, counted no further than cap + 1."""
    cursor = await conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM memories WHERE user_id = %s LIMIT %s) AS rows",
        (user_id, cap + 1),
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def vector_candidates(
    conn: Connection,
    *,
    user_id: str,
    model: str,
    query_vector: Sequence[float],
    memory_filter: MemoryFilter,
    limit: int,
    exact: bool,
) -> list[Candidate]:
    """The nearest live memories, scored by cosine similarity, nearest first.

    exact: scan the user's own rows (found through the user_id btree) in full,
    recall 1.0 and fast for up to tens of thousands of rows. Otherwise the HNSW
    index with pgvector's iterative scan, which keeps looking until enough rows
    pass the user filter (plain HNSW would return too few).
    """
    params = {"user": user_id, "model": model, "q": vector_literal(query_vector), "limit": limit}
    where = f"user_id = %(user)s AND embedding_model = %(model)s AND {LIVE}" + filter_sql(
        memory_filter, params
    )
    if exact:
        # MATERIALIZED keeps the planner from ordering through the HNSW index.
        sql = f"""
            WITH mine AS MATERIALIZED (
                SELECT id, embedding, create_time FROM memories WHERE {where})
            SELECT id::text, 1 - (embedding <=> %(q)s::vector), create_time FROM mine
            ORDER BY embedding <=> %(q)s::vector LIMIT %(limit)s
        """
    else:
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        await conn.execute("SET LOCAL hnsw.ef_search = 200")
        sql = f"""
            SELECT id::text, 1 - (embedding <=> %(q)s::vector), create_time
            FROM memories WHERE {where}
            ORDER BY embedding <=> %(q)s::vector LIMIT %(limit)s
        """
    cursor = await conn.execute(sql, params)
    rows = [(row[0], float(row[1]), row[2]) for row in await cursor.fetchall()]
    # relaxed_order may return rows slightly out of order.
    return sorted(rows, key=lambda row: row[1], reverse=True)


async def keyword_candidates(
    conn: Connection, *, user_id: str, text: str, memory_filter: MemoryFilter, limit: int
) -> list[Candidate]:
    """Live memories sharing any word with `text`, scored by rank in 0..1, best first.

    plainto_tsquery ANDs the words; a question rarely repeats every word of
    the memory that answers it, so the terms are ORed instead.
    """
    params = {"user": user_id, "text": text, "limit": limit}
    where = f"user_id = %(user)s AND content_tsv @@ query AND {LIVE}" + filter_sql(
        memory_filter, params
    )
    cursor = await conn.execute(
        f"""
        SELECT id::text, ts_rank_cd(content_tsv, query, 32) AS rank, create_time
        FROM memories,
             to_tsquery('english',
                 replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')) AS query
        WHERE {where}
        ORDER BY rank DESC LIMIT %(limit)s
        """,
        params,
    )
    return [(row[0], float(row[1]), row[2]) for row in await cursor.fetchall()]
