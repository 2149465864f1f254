"""Long-term memories and their history in Postgres.

Every statement is scoped to one user except the admin wipe and the
workers' maintenance (embedding, expiry), which name no user by design.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import AsyncConnection, adapters
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from server import blind_index
from server.crypto import Cipher
from server.memory_models import (
    Memory,
    MemoryDraft,
    MemoryEvent,
    MemoryFilter,
    MemoryKind,
    MemoryOp,
)

Connection = AsyncConnection[TupleRow]

# `indexed` is true only for a vector of the model in use: after a model
# change, rows stay searchable by keyword until they are re-embedded.
_COLUMNS = """id::text, user_id, agent_id, session_id, kind, coalesce(key, ''), content, topics,
    metadata, source_message_ids, create_time, update_time, expire_time,
    embedding IS NOT NULL AND embedding_model = %(model)s, key_id"""
LIVE = "(expire_time IS NULL OR expire_time > now())"

# Which Memory fields UpdateMemory may change, and their columns.
UPDATABLE_FIELDS = (
    "content",
    "key",
    "topics",
    "metadata",
    "expire_time",
    "agent_id",
    "session_id",
    "source_message_ids",
)


# For statements elsewhere (search) that return whole rows: the columns, with
# %(model)s as a parameter, and the Memory made from them.
ROW_COLUMNS = _COLUMNS


def memory_from_row(row: Sequence[Any], cipher: Cipher) -> Memory:
    """The Memory of a row of ROW_COLUMNS, opened when sealed."""
    content, metadata = row[6], row[8]
    if row[14] is not None:  # key_id: the content is sealed
        content = cipher.open(content, row[14])
    if isinstance(metadata, str):  # sealed metadata says so itself
        metadata = cipher.open_json(metadata)
    return Memory(
        id=row[0],
        user_id=row[1],
        agent_id=row[2],
        session_id=row[3],
        kind=MemoryKind(row[4]),
        key=row[5],
        content=content,
        topics=list(row[7]),
        metadata=metadata,
        source_message_ids=list(row[9]),
        create_time=row[10],
        update_time=row[11],
        expire_time=row[12],
        indexed=bool(row[13]),
    )


def filter_sql(memory_filter: MemoryFilter, params: dict[str, Any]) -> str:
    """SQL conditions (ANDed, each with a leading AND) for a filter; fills params."""
    conditions = []
    if memory_filter.kinds:
        conditions.append("kind = ANY(%(f_kinds)s)")
        params["f_kinds"] = [int(kind) for kind in memory_filter.kinds]
    if memory_filter.topics:
        conditions.append("topics && %(f_topics)s")
        params["f_topics"] = memory_filter.topics
    if memory_filter.agent_id:
        conditions.append("agent_id = %(f_agent)s")
        params["f_agent"] = memory_filter.agent_id
    if memory_filter.session_id:
        conditions.append("session_id = %(f_session)s")
        params["f_session"] = memory_filter.session_id
    if memory_filter.created_after is not None:
        conditions.append("create_time >= %(f_after)s")
        params["f_after"] = memory_filter.created_after
    if memory_filter.created_before is not None:
        conditions.append("create_time < %(f_before)s")
        params["f_before"] = memory_filter.created_before
    return "".join(f" AND {condition}" for condition in conditions)


def content_hash(content: str) -> bytes:
    """The plaintext rows' content hash (no key): sha256 of the content."""
    return hashlib.sha256(content.encode()).digest()


class MemoryStore:
    def __init__(self, *, embedding_model: str, cipher: Cipher | None = None) -> None:
        self.embedding_model = embedding_model
        self.cipher = cipher if cipher is not None else Cipher.disabled()

    def _memory(self, row: Sequence[Any]) -> Memory:
        return memory_from_row(row, self.cipher)

    def content_hashes(self, user_id: str, content: str) -> list[bytes]:
        """Every hash a stored copy of this content may carry: under each key
        (rows not yet re-keyed keep an older key's), and the plaintext rows'."""
        hashes = [blind_index.content_hash(key, user_id, content) for key in self.cipher.keys]
        hashes.append(content_hash(content))
        return hashes

    def _content_params(self, user_id: str, content: str) -> dict[str, Any]:
        """content, hash, full-text terms and key_id of a row holding `content`."""
        cipher = self.cipher
        if not cipher.enabled:
            # Postgres analyses the plaintext itself (_TSV_SQL), as before.
            return {"content": content, "hash": content_hash(content), "key_id": None}
        key = cipher.current
        return {
            "content": cipher.seal(content),
            "hash": blind_index.content_hash(key, user_id, content),
            "tsv": blind_index.tsvector(key, user_id, content),
            "key_id": key.id,
        }

    @property
    def _tsv_sql(self) -> str:
        """The content_tsv value: Postgres' analysis of the plaintext, as the
        generated column did before migration 0004, or the blind index."""
        if self.cipher.enabled:
            return "%(tsv)s::tsvector"
        return "to_tsvector('english', %(content)s::text)"

    def _metadata_param(self, metadata: Any) -> Any:
        if metadata is None:
            return None
        return Jsonb(self.cipher.seal_json(metadata) if self.cipher.enabled else metadata)

    def _params(self, **params: Any) -> dict[str, Any]:
        return {"model": self.embedding_model, **params}

    async def _one(self, conn: Connection, where: str, **params: Any) -> Memory | None:
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE {where}", self._params(**params)
        )
        row = await cursor.fetchone()
        return None if row is None else self._memory(row)

    async def get(self, conn: Connection, *, user_id: str, memory_id: str) -> Memory | None:
        return await self._one(
            conn, f"user_id = %(user)s AND id = %(id)s AND {LIVE}", user=user_id, id=memory_id
        )

    async def get_fact(
        self, conn: Connection, *, user_id: str, key: str, for_update: bool = False
    ) -> Memory | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._one(
            conn,
            f"user_id = %(user)s AND kind = 2 AND key = %(key)s AND {LIVE}{lock}",
            user=user_id,
            key=key,
        )

    async def get_many(
        self, conn: Connection, *, user_id: str, memory_ids: list[str]
    ) -> list[Memory]:
        """The user's live memories among these ids, in no particular order."""
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM memories"
            f" WHERE user_id = %(user)s AND id = ANY(%(ids)s::uuid[]) AND {LIVE}",
            self._params(user=user_id, ids=memory_ids),
        )
        return [self._memory(row) for row in await cursor.fetchall()]

    async def find_by_request_id(
        self, conn: Connection, *, user_id: str, request_id: str
    ) -> Memory | None:
        return await self._one(
            conn,
            "user_id = %(user)s AND request_id = %(request)s",
            user=user_id,
            request=request_id,
        )

    async def find_semantic_duplicate(
        self, conn: Connection, *, user_id: str, content: str
    ) -> Memory | None:
        return await self._one(
            conn,
            f"user_id = %(user)s AND kind = 1 AND content_hash = ANY(%(hashes)s) AND {LIVE}",
            user=user_id,
            hashes=self.content_hashes(user_id, content),
        )

    async def delete_expired_clashes(
        self, conn: Connection, *, user_id: str, draft: MemoryDraft
    ) -> list[Memory]:
        """Delete the user's expired rows that hold the draft's fact key or
        semantic content: the unique indexes still count them until the expiry
        job has purged them, and a new memory must not clash with them."""
        cursor = await conn.execute(
            f"""
            DELETE FROM memories WHERE user_id = %(user)s AND NOT {LIVE}
                AND ((kind = 2 AND key = %(key)s) OR (kind = 1 AND content_hash = ANY(%(hashes)s)))
            RETURNING {_COLUMNS}
            """,
            self._params(
                user=user_id, key=draft.key, hashes=self.content_hashes(user_id, draft.content)
            ),
        )
        return [self._memory(row) for row in await cursor.fetchall()]

    async def insert(self, conn: Connection, *, user_id: str, draft: MemoryDraft) -> Memory:
        cursor = await conn.execute(
            f"""
            INSERT INTO memories (id, user_id, agent_id, session_id, kind, key, content,
                content_hash, content_tsv, key_id, topics, metadata, source_message_ids,
                request_id, expire_time)
            VALUES (%(id)s, %(user)s, %(agent)s, %(session)s, %(kind)s, %(key)s, %(content)s,
                %(hash)s, {self._tsv_sql}, %(key_id)s, %(topics)s, %(metadata)s, %(sources)s,
                %(request)s, %(expire)s)
            RETURNING {_COLUMNS}
            """,
            self._params(
                id=uuid.uuid4(),
                user=user_id,
                agent=draft.agent_id,
                session=draft.session_id,
                kind=int(draft.kind),
                key=draft.key or None,
                **self._content_params(user_id, draft.content),
                topics=draft.topics,
                metadata=self._metadata_param(draft.metadata),
                sources=draft.source_message_ids,
                request=draft.request_id or None,
                expire=draft.expire_time,
            ),
        )
        row = await cursor.fetchone()
        assert row is not None  # INSERT .. RETURNING always yields the row
        return self._memory(row)

    async def update(
        self, conn: Connection, *, user_id: str, memory_id: str, changes: dict[str, Any]
    ) -> Memory:
        """Set the given columns (names from UPDATABLE_FIELDS). A content change
        drops the embedding, so the row is re-embedded."""
        assignments = ["update_time = now()"]
        params = self._params(user=user_id, id=memory_id)
        for name, value in changes.items():
            if name not in UPDATABLE_FIELDS:
                raise ValueError(f"not an updatable column: {name}")
            if name == "content":
                continue  # below, with the columns that derive from it
            if name == "metadata":
                value = self._metadata_param(value)
            if name == "key":
                value = value or None
            assignments.append(f"{name} = %(v_{name})s")
            params[f"v_{name}"] = value
        if "content" in changes:
            assignments += [
                "content = %(content)s",
                "content_hash = %(hash)s",
                f"content_tsv = {self._tsv_sql}",
                "key_id = %(key_id)s",
                "embedding = NULL",
                "embedding_model = NULL",
            ]
            params.update(self._content_params(user_id, changes["content"]))
        cursor = await conn.execute(
            f"UPDATE memories SET {', '.join(assignments)}"
            f" WHERE user_id = %(user)s AND id = %(id)s RETURNING {_COLUMNS}",
            params,
        )
        row = await cursor.fetchone()
        assert row is not None  # callers lock the row first
        return self._memory(row)

    async def lock(self, conn: Connection, *, user_id: str, memory_id: str) -> Memory | None:
        return await self._one(
            conn,
            f"user_id = %(user)s AND id = %(id)s AND {LIVE} FOR UPDATE",
            user=user_id,
            id=memory_id,
        )

    async def list_page(
        self,
        conn: Connection,
        *,
        user_id: str,
        memory_filter: MemoryFilter,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Memory]:
        """Newest first, after a keyset position (create_time, id)."""
        params = self._params(user=user_id, limit=limit)
        where = f"user_id = %(user)s AND {LIVE}" + filter_sql(memory_filter, params)
        if after is not None:
            where += " AND (create_time, id) < (%(a_time)s, %(a_id)s)"
            params["a_time"], params["a_id"] = after[0], uuid.UUID(after[1])
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE {where}"
            " ORDER BY create_time DESC, id DESC LIMIT %(limit)s",
            params,
        )
        return [self._memory(row) for row in await cursor.fetchall()]

    async def delete(
        self,
        conn: Connection,
        *,
        user_id: str | None,
        memory_id: str | None = None,
        expired_only: bool = False,
        limit: int | None = None,
        skip_locked: bool = False,
    ) -> list[Memory]:
        """Delete and return memories: one (memory_id), a user's (user_id), expired
        ones, or (user_id None) every user's, at most `limit` of them. With
        skip_locked, rows another transaction holds (an embedding batch) are
        left for a later call instead of waited for. The caller records the events."""
        params = self._params(user=user_id, id=memory_id, limit=limit)
        conditions = ["TRUE"]
        if user_id is not None:
            conditions.append("user_id = %(user)s")
        if memory_id is not None:
            conditions.append(f"id = %(id)s AND {LIVE}")
        if expired_only:
            conditions.append("expire_time <= now()")
        where = " AND ".join(conditions)
        if limit is not None:
            lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
            where = f"id IN (SELECT id FROM memories WHERE {where} LIMIT %(limit)s {lock})"
        cursor = await conn.execute(
            f"DELETE FROM memories WHERE {where} RETURNING {_COLUMNS}", params
        )
        return [self._memory(row) for row in await cursor.fetchall()]

    # -- history -----------------------------------------------------------

    async def record_events(
        self,
        conn: Connection,
        *,
        user_id: str,
        events: list[tuple[str, MemoryOp, str | None, str | None]],
        reason: str,
        actor: str,
    ) -> None:
        """Append (memory_id, op, old_content, new_content) events."""
        if not events:
            return
        cipher = self.cipher
        if cipher.enabled:
            events = [
                (
                    memory_id,
                    op,
                    None if old is None else cipher.seal(old),
                    None if new is None else cipher.seal(new),
                )
                for memory_id, op, old, new in events
            ]
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO memory_events (memory_id, user_id, op, old_content, new_content,"
                " reason, actor, key_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (memory_id, user_id, int(op), old, new, reason, actor, cipher.key_id)
                    for memory_id, op, old, new in events
                ],
            )

    async def events(self, conn: Connection, *, user_id: str, memory_id: str) -> list[MemoryEvent]:
        cursor = await conn.execute(
            "SELECT memory_id::text, op, coalesce(old_content, ''), coalesce(new_content, ''),"
            " reason, actor, create_time, key_id FROM memory_events"
            " WHERE user_id = %s AND memory_id = %s ORDER BY id",
            (user_id, memory_id),
        )
        open_ = self.cipher.open
        return [
            MemoryEvent(
                memory_id=row[0],
                op=MemoryOp(row[1]),
                old_content=open_(row[2], row[7]) if row[2] else "",
                new_content=open_(row[3], row[7]) if row[3] else "",
                reason=row[4],
                actor=row[5],
                create_time=row[6],
            )
            for row in await cursor.fetchall()
        ]

    # -- embedding ---------------------------------------------------------

    async def claim_unembedded(self, conn: Connection, *, limit: int) -> list[tuple[str, str]]:
        """Lock up to `limit` rows whose vector is missing (oldest first), then
        rows whose vector is of another model; (id, content) pairs. Rows
        locked by another worker are skipped, so workers share the queue
        without doing a row twice.

        Two statements, each answered from its own partial index
        (memories_unembedded, memories_embedded_model): one statement ORing
        both tests read the whole table on every claim."""
        claimed = await self._claim(
            conn, "embedding IS NULL", order="ORDER BY create_time", limit=limit
        )
        if len(claimed) < limit:
            # `<>` cannot walk a btree; the two ranges either side of it can.
            # Unordered: after a model change every row is stale, and sorting
            # them all for each batch would cost more than the batch's model call.
            stale = (
                "embedding IS NOT NULL"
                " AND (embedding_model < %(model)s OR embedding_model > %(model)s)"
            )
            claimed += await self._claim(conn, stale, order="", limit=limit - len(claimed))
        return claimed

    async def _claim(
        self, conn: Connection, where: str, *, order: str, limit: int
    ) -> list[tuple[str, str]]:
        cursor = await conn.execute(
            f"SELECT id::text, content, key_id FROM memories WHERE {where} AND {LIVE}"
            f" {order} LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
            self._params(limit=limit),
        )
        return [(row[0], self.cipher.open(row[1], row[2])) for row in await cursor.fetchall()]

    async def set_embeddings(
        self, conn: Connection, *, ids: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> None:
        """Store row i of `vectors` as memory ids[i]'s vector (one round trip).

        The vectors travel in pgvector's binary format, a copy of the array's
        bytes: as text, formatting ~25k floats per batch cost the worker more
        CPU than the statements themselves.
        """
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "UPDATE memories SET embedding = %b::vector, embedding_model = %s WHERE id = %s",
                [
                    (BinaryVector(vector), self.embedding_model, id_)
                    for id_, vector in zip(ids, np.asarray(vectors, dtype=">f4"), strict=True)
                ],
            )

    async def count_unindexed(self, conn: Connection, *, user_id: str) -> int:
        """The user's live rows not yet embedded with the model in use."""
        cursor = await conn.execute(
            "SELECT count(*) FROM memories WHERE user_id = %(user)s"
            " AND (embedding IS NULL OR embedding_model IS DISTINCT FROM %(model)s)"
            f" AND {LIVE}",
            self._params(user=user_id),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def count_user_rows(self, conn: Connection, *, user_id: str) -> int:
        cursor = await conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user_id,))
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def pending_embeddings(conn: Connection) -> tuple[int, datetime | None]:
    """How many live rows wait for a vector, and since when the oldest waits
    (its last write). Counts rows without any vector, through the partial
    index memories_unembedded; rows holding another model's vector after a
    model change are re-embedded by the sweep but not counted here."""
    cursor = await conn.execute(
        f"SELECT count(*), min(update_time) FROM memories WHERE embedding IS NULL AND {LIVE}"
    )
    row = await cursor.fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


class BinaryVector:
    """One vector to send in pgvector's binary format (see BinaryVectorDumper)."""

    __slots__ = ("values",)

    def __init__(self, values: npt.NDArray[np.float32]) -> None:
        self.values = values


class BinaryVectorDumper(Dumper):
    """pgvector's binary format: int16 dimensions, int16 unused, float32 each,
    all big-endian. The vector type's oid differs per database (an extension's
    type), so the parameter goes untyped (oid 0) and the statement's `::vector`
    cast names it; the server then reads the bytes with vector's receive
    function."""

    format = Format.BINARY

    def dump(self, obj: BinaryVector) -> bytes:
        values = np.asarray(obj.values, dtype=">f4")
        return struct.pack(">hh", values.shape[0], 0) + values.tobytes()


adapters.register_dumper(BinaryVector, BinaryVectorDumper)
