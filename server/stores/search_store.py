"""Hybrid search as one SQL statement, scoped to one user and filtered inside SQL.

Vector candidates (cosine, `<=>`, vector_cosine_ops) and full-text candidates
are each ranked, fused by reciprocal rank fusion, recency-weighted, cut at
min_score and joined to their rows, all in Postgres: one round trip per
search, and only the winning rows leave the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server import blind_index
from server.crypto import Cipher
from server.memory_models import Memory, MemoryFilter, SearchMode
from server.stores.memory_store import (
    LIVE,
    ROW_COLUMNS,
    BinaryVector,
    Connection,
    filter_sql,
    memory_from_row,
)

# The usual constant of reciprocal rank fusion: ranks past the first few
# matter less, and neither signal dominates.
RRF_K = 60

# Session settings for the HNSW path, given to every server connection at
# connect time (server/resources.py): an iterative scan keeps walking the
# graph until enough rows pass the user filter (a plain HNSW scan stops after
# ef_search candidates and returns too few); relaxed_order may return rows
# slightly out of distance order, which the ranking below re-sorts.
# Session-wide rather than SET LOCAL: a search then needs no transaction
# block, and only search orders by distance.
HNSW_SESSION_OPTIONS = "-c hnsw.iterative_scan=relaxed_order -c hnsw.ef_search=200"


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """What to search for; the parts of a request SQL needs."""

    user_id: str
    text: str
    query_vector: Sequence[float] | None  # None in keyword mode
    model: str
    mode: SearchMode
    memory_filter: MemoryFilter
    candidates: int  # per signal, before fusion
    limit: int
    min_score: float
    recency_weight: float
    half_life_s: float
    exact_max_rows: int


def _semantic_sql(plan: SearchPlan, params: dict[str, Any]) -> str:
    """CTE `semantic(id, score, create_time, rank)`: the nearest live memories.

    Users with up to exact_max_rows rows: their own rows (found through the
    user_id btree) are scanned in full, recall 1.0. Larger users: the HNSW
    index with an iterative scan. Which branch runs is decided inside the
    statement (a one-time filter on the row count; the other branch's scan
    never starts), so there is no separate count query and no stale count.
    """
    assert plan.query_vector is not None
    # Binary: formatting and parsing 384 floats as text cost ~0.3 ms a search.
    params["q"] = BinaryVector(np.asarray(plan.query_vector, dtype=">f4"))
    params["model"] = plan.model
    params["exact_max"] = plan.exact_max_rows
    where = f"user_id = %(user)s AND embedding_model = %(model)s AND {LIVE}" + filter_sql(
        plan.memory_filter, params
    )
    return f"""
        small_user AS (
            SELECT count(*) <= %(exact_max)s AS small FROM (
                SELECT 1 FROM memories WHERE user_id = %(user)s LIMIT %(exact_max)s + 1
            ) AS counted),
        -- MATERIALIZED keeps the planner from ordering through the HNSW index.
        mine AS MATERIALIZED (
            SELECT id, embedding, create_time FROM memories
            WHERE {where} AND (SELECT small FROM small_user)),
        nearest AS (
            (SELECT id, embedding <=> %(q)b::vector AS distance, create_time FROM mine
             ORDER BY distance LIMIT %(candidates)s)
            UNION ALL
            (SELECT id, embedding <=> %(q)b::vector AS distance, create_time FROM memories
             WHERE {where} AND NOT (SELECT small FROM small_user)
             ORDER BY distance LIMIT %(candidates)s)),
        semantic AS (
            SELECT id, 1 - distance AS score, create_time,
                row_number() OVER (ORDER BY distance, id) AS rank
            FROM nearest)"""


def _keyword_sql(plan: SearchPlan, params: dict[str, Any], cipher: Cipher) -> str:
    """CTE `keyword(id, score, create_time, rank)`: live memories sharing any
    word with the query, scored by ts_rank_cd in 0..1.

    plainto_tsquery ANDs the words; a question rarely repeats every word of
    the memory that answers it, so the terms are ORed instead. With
    encryption, the query is the OR of its terms' blind-index hashes, made
    here (server/blind_index.py): Postgres never sees the words.
    """
    if cipher.enabled:
        # tsquery's input reads the hashes as they are (no parser, no stemming).
        query = "(SELECT %(terms)s::tsquery)"
        params["terms"] = blind_index.tsquery(cipher.keys, plan.user_id, plan.text)
    else:
        # 'simple': the lexemes plainto_tsquery returns are already
        # stemmed; stemming them again ('nurs' -> 'nur') misses.
        query = (
            "to_tsquery('simple',"
            " replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | '))"
        )
        params["text"] = plan.text
    where = f"user_id = %(user)s AND content_tsv @@ query AND {LIVE}" + filter_sql(
        plan.memory_filter, params
    )
    return f"""
        matching AS (
            SELECT id, ts_rank_cd(content_tsv, query, 32) AS score, create_time
            FROM memories, {query} AS q(query)
            WHERE {where}
            ORDER BY score DESC, id LIMIT %(candidates)s),
        keyword AS (
            SELECT id, score, create_time, row_number() OVER (ORDER BY score DESC, id) AS rank
            FROM matching)"""


def _fused_sql(mode: SearchMode) -> str:
    """CTE `fused(hit_id, hit_score, hit_time)`, scores in 0..1."""
    if mode is SearchMode.SEMANTIC:
        return """
        fused AS (
            SELECT id AS hit_id, greatest(score, 0) AS hit_score, create_time AS hit_time
            FROM semantic)"""
    if mode is SearchMode.KEYWORD:
        return """
        fused AS (SELECT id AS hit_id, score AS hit_score, create_time AS hit_time FROM keyword)"""
    # Over the best possible fused score (first in both lists), so 0..1.
    return f"""
        fused AS (
            SELECT coalesce(s.id, k.id) AS hit_id,
                (coalesce(1.0 / ({RRF_K} + s.rank), 0) + coalesce(1.0 / ({RRF_K} + k.rank), 0))
                    / (2.0 / ({RRF_K} + 1)) AS hit_score,
                coalesce(s.create_time, k.create_time) AS hit_time
            FROM semantic AS s FULL JOIN keyword AS k ON s.id = k.id)"""


def search_sql(plan: SearchPlan, cipher: Cipher | None = None) -> tuple[str, dict[str, Any]]:
    """The statement and its parameters. Its text depends only on the mode,
    which filters are set and whether recency counts, so psycopg's automatic
    prepared statements serve repeated shapes."""
    params: dict[str, Any] = {
        "user": plan.user_id,
        "model": plan.model,
        "candidates": plan.candidates,
        "limit": plan.limit,
        "min_score": plan.min_score,
    }
    ctes = []
    if plan.mode is not SearchMode.KEYWORD:
        ctes.append(_semantic_sql(plan, params))
    if plan.mode is not SearchMode.SEMANTIC:
        ctes.append(_keyword_sql(plan, params, cipher or Cipher.disabled()))
    ctes.append(_fused_sql(plan.mode))
    score = "hit_score"
    if plan.recency_weight:
        # Halves the fresh share every half-life: score * ((1 - w) + w * 0.5^(age/half_life)).
        params["weight"] = plan.recency_weight
        params["half_life"] = plan.half_life_s
        score = (
            "hit_score * ((1 - %(weight)s::float8) + %(weight)s::float8 * power(0.5::float8,"
            " greatest(extract(epoch FROM now() - hit_time)::float8, 0) / %(half_life)s::float8))"
        )
    ctes.append(f"""
        scored AS (SELECT hit_id, ({score})::float8 AS final_score FROM fused)""")
    sql = f"""
        WITH {",".join(ctes)}
        SELECT {ROW_COLUMNS}, final_score
        FROM scored JOIN memories ON memories.id = scored.hit_id
        WHERE memories.user_id = %(user)s AND final_score >= %(min_score)s
        ORDER BY final_score DESC, memories.id LIMIT %(limit)s
    """
    return sql, params


async def search(
    conn: Connection, plan: SearchPlan, *, cipher: Cipher
) -> list[tuple[Memory, float]]:
    """The best live memories with their scores, best first (one statement)."""
    sql, params = search_sql(plan, cipher)
    cursor = await conn.execute(sql, params)
    return [(memory_from_row(row, cipher), float(row[-1])) for row in await cursor.fetchall()]
