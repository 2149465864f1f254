"""The baseline: the application embeds in-process and talks SQL to
Postgres+pgvector itself (psycopg), with no service in between.

Its own embedded Postgres (the same build memoryd uses), so that its resident
memory is its own; the same model and backend as memoryd's default
(server.embedding.Embedder). Search is exact (cosine over the user's rows,
found by a btree index on user_id): at these sizes per user that is faster
than HNSW and cannot miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from bench.peers.adapter import Hit, Item, PeerAdapter, Turn, pids_with_cmdline
from server.embedded import EmbeddedStack
from server.embedding import Embedder
from server.settings import Settings

_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS peer_memories (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    source_id text NOT NULL,
    content text NOT NULL,
    embedding vector(384) NOT NULL
);
CREATE INDEX IF NOT EXISTS peer_memories_user ON peer_memories (user_id);
CREATE TABLE IF NOT EXISTS peer_messages (
    user_id text NOT NULL,
    session_id text NOT NULL,
    seq bigserial,
    role text NOT NULL,
    content text NOT NULL,
    PRIMARY KEY (user_id, session_id, seq)
);
"""


def _vector(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{v:.7g}" for v in values) + "]"


class DirectSqlAdapter(PeerAdapter):
    name = "direct SQL"
    notes = (
        "psycopg + pgvector, exact cosine search by user; embedding in the client "
        "(onnx backend), whose memory is not counted"
    )

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._root: Path | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._embedder: Embedder | None = None

    async def start(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="memoryd-peers-sql-"))
        self._root.chmod(0o755)  # Postgres runs as another user
        self._stack.callback(shutil.rmtree, self._root, True)
        stores = EmbeddedStack(self._root / "data", redis=False)
        urls = await asyncio.to_thread(stores.start)
        self._stack.callback(stores.stop)
        assert urls.postgres_url is not None
        self._embedder = await asyncio.to_thread(Embedder.load, Settings())
        self._pool = AsyncConnectionPool(urls.postgres_url, min_size=2, max_size=16, open=False)
        await self._pool.open(wait=True)
        async with self._pool.connection() as conn:
            await conn.execute(_SCHEMA)

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await asyncio.to_thread(self._stack.close)

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("the baseline is not started")
        return self._pool

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            raise RuntimeError("the baseline is not started")
        return self._embedder

    async def add_memory(self, user_id: str, item: Item) -> None:
        await self.add_memories(user_id, [item])

    async def add_memories(self, user_id: str, items: Sequence[Item]) -> None:
        vectors = await self.embedder.embed_async([item.text for item in items])
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO peer_memories (user_id, source_id, content, embedding)"
                " VALUES (%s, %s, %s, %s::vector)",
                [
                    (user_id, item.source_id, item.text, _vector(vector))
                    for item, vector in zip(items, vectors, strict=True)
                ],
            )

    async def search(self, user_id: str, query: str, k: int) -> list[Hit]:
        # Not embed_query: its cache would make repeated queries free here only.
        [vector] = await self.embedder.embed_async([query])
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT source_id, content FROM peer_memories WHERE user_id = %s"
                " ORDER BY embedding <=> %s::vector LIMIT %s",
                (user_id, _vector(vector), k),
            )
            rows = await cursor.fetchall()
        return [Hit(str(source_id), str(content)) for source_id, content in rows]

    async def append_session(self, user_id: str, session_id: str, turns: Sequence[Turn]) -> None:
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO peer_messages (user_id, session_id, role, content)"
                " VALUES (%s, %s, %s, %s)",
                [(user_id, session_id, turn.role, turn.content) for turn in turns],
            )

    async def history(self, user_id: str, session_id: str, last: int) -> list[Turn]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT role, content FROM (SELECT seq, role, content FROM peer_messages"
                " WHERE user_id = %s AND session_id = %s ORDER BY seq DESC LIMIT %s) newest"
                " ORDER BY seq",
                (user_id, session_id, last),
            )
            rows = await cursor.fetchall()
        return [Turn(str(role), str(content)) for role, content in rows]

    async def delete_user(self, user_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM peer_memories WHERE user_id = %s", (user_id,))
            await conn.execute("DELETE FROM peer_messages WHERE user_id = %s", (user_id,))

    def pids(self) -> list[int]:
        if self._root is None:
            return []
        return pids_with_cmdline("postgres", str(self._root / "data" / "postgres"))
