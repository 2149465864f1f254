"""`memoryd rekey`: seal every stored content with the first configured key.

After a key rotation (MEMORYD_ENCRYPTION_KEY="new,old") rows sealed with the
old key, and rows written before encryption was turned on, are re-sealed with
the new key, and their blind-index terms and content hashes rebuilt with it.
When nothing is left under another key, the other keys are forgotten
(encryption_keys), and processes may drop them from their setting.

Safe while servers run (with the same first key): rows go in small batches,
each locked (FOR UPDATE) and rewritten in its own transaction, so a
concurrent change waits for at most one batch; a row changed meanwhile is
re-read under the lock. Idempotent and resumable: only rows not sealed with
the first key are selected, so a rerun continues where a stopped one ended.

Redis windows are not rewritten: a window holding plaintext or another key's
entries is dropped, and the next read rebuilds it from Postgres.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from redis.asyncio import Redis

from server import blind_index
from server.crypto import Cipher, key_id_hex
from server.errors import FailedPrecondition
from server.stores import key_store, redis_keys

log = logging.getLogger(__name__)

Report = Callable[[str], None]
Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class _Table:
    """How one table's rows are found, re-sealed and written back."""

    name: str
    key: tuple[str, ...]  # primary key columns, the order of the scan
    columns: tuple[str, ...]  # what the rewrite reads (after the key)
    stale: str  # SQL: the row is not sealed with %(cur)s / %(cur_hex)s
    assignments: str  # SQL SET list, parameters named as `reseal` returns them


def _json_stale(column: str) -> str:
    """A jsonb column holding plaintext or another key's sealed value."""
    return (
        f"({column} IS NOT NULL AND (jsonb_typeof({column}) <> 'string'"
        f" OR left({column} #>> '{{}}', 16) <> %(cur_hex)s))"
    )


_TABLES = (
    _Table(
        name="messages",
        key=("user_id", "session_id", "seq"),
        columns=("content", "metadata", "key_id"),
        stale="key_id IS DISTINCT FROM %(cur)s",
        assignments="content = %(content)s, metadata = %(metadata)s, key_id = %(key_id)s",
    ),
    _Table(
        name="memories",
        key=("id",),
        columns=("user_id", "content", "metadata", "key_id"),
        stale=f"(key_id IS DISTINCT FROM %(cur)s OR {_json_stale('metadata')})",
        assignments=(
            "content = %(content)s, metadata = %(metadata)s, key_id = %(key_id)s,"
            " content_hash = %(hash)s, content_tsv = %(tsv)s::tsvector"
        ),
    ),
    _Table(
        name="memory_events",
        key=("id",),
        columns=("old_content", "new_content", "key_id"),
        stale="key_id IS DISTINCT FROM %(cur)s",
        assignments="old_content = %(old)s, new_content = %(new)s, key_id = %(key_id)s",
    ),
    _Table(
        name="extraction_jobs",
        key=("id",),
        columns=("messages",),
        stale=_json_stale("messages"),
        assignments="messages = %(messages)s",
    ),
)


@dataclass
class RekeyResult:
    resealed: dict[str, int] = field(default_factory=dict)
    # Rows left as they were: a semantic memory whose re-keyed content hash
    # equals another row's (the same content stored twice before dedupe could
    # see it); deleting one is the operator's call.
    skipped: dict[str, list[str]] = field(default_factory=dict)
    windows_dropped: int = 0
    forgotten_keys: list[int] = field(default_factory=list)


class Rekeyer:
    def __init__(
        self,
        *,
        postgres_url: str,
        redis_url: str | None,
        cipher: Cipher,
        batch: int = 500,
        report: Report = print,
    ) -> None:
        if not cipher.enabled:
            raise FailedPrecondition(
                "MEMORYD_ENCRYPTION_KEY is not set: rekey seals data with its first key"
            )
        self._postgres_url = postgres_url
        self._redis_url = redis_url
        self._cipher = cipher
        self._batch = batch
        self._report = report
        self._cur = cipher.current
        self._params = {"cur": self._cur.id, "cur_hex": key_id_hex(self._cur.id)}

    async def run(self) -> RekeyResult:
        result = RekeyResult()
        async with await psycopg.AsyncConnection.connect(self._postgres_url) as conn:
            async with conn.transaction():
                # Registered before it seals anything; every key that sealed
                # data must be here, or that data could not be read.
                await key_store.check(conn, self._cipher)
            for table in _TABLES:
                await self._rekey_table(conn, table, result)
            if self._redis_url:
                result.windows_dropped = await self._drop_stale_windows()
            left = {t.name: await self._count_stale(conn, t) for t in _TABLES}
            if any(left.values()):
                self._report(
                    "not every row is sealed with the first key yet "
                    f"({', '.join(f'{n}: {c}' for n, c in left.items() if c)}): "
                    "the older keys are still needed"
                )
            else:
                async with conn.transaction():
                    result.forgotten_keys = await key_store.forget_all_but(
                        conn, key_id=self._cur.id
                    )
                self._report(
                    f"done: everything is sealed with key {key_id_hex(self._cur.id)}; "
                    "the other keys may be removed from MEMORYD_ENCRYPTION_KEY"
                )
        return result

    async def _count_stale(self, conn: psycopg.AsyncConnection[Any], table: _Table) -> int:
        cursor = await conn.execute(
            f"SELECT count(*) FROM {table.name} WHERE {table.stale}", self._params
        )
        row = await cursor.fetchone()
        await conn.commit()
        return int(row[0]) if row else 0

    async def _rekey_table(
        self, conn: psycopg.AsyncConnection[Any], table: _Table, result: RekeyResult
    ) -> None:
        total = await self._count_stale(conn, table)
        done = 0
        after: Row | None = None
        keys = ", ".join(table.key)
        select = (
            f"SELECT {keys}, {', '.join(table.columns)} FROM {table.name}"
            f" WHERE {table.stale} AFTER_KEY ORDER BY {keys} LIMIT %(limit)s FOR UPDATE"
        )
        where_key = " AND ".join(f"{column} = %(k_{column})s" for column in table.key)
        update = f"UPDATE {table.name} SET {table.assignments} WHERE {where_key}"
        placeholders = ", ".join(f"%(a_{column})s" for column in table.key)
        self._report(f"{table.name}: {total} rows to seal with key {key_id_hex(self._cur.id)}")
        while True:
            params: dict[str, Any] = {**self._params, "limit": self._batch}
            condition = ""
            if after is not None:
                condition = f"AND ({keys}) > ({placeholders})"
                params.update({f"a_{c}": v for c, v in zip(table.key, after, strict=True)})
            async with conn.transaction():
                cursor = await conn.execute(select.replace("AFTER_KEY", condition), params)
                rows = await cursor.fetchall()
                if not rows:
                    break
                for row in rows:
                    key_values = row[: len(table.key)]
                    values = self._reseal(table, row[len(table.key) :])
                    values.update({f"k_{c}": v for c, v in zip(table.key, key_values, strict=True)})
                    try:
                        async with conn.transaction():  # a savepoint: the hash may clash
                            await conn.execute(update, values)
                    except psycopg.errors.UniqueViolation:
                        result.skipped.setdefault(table.name, []).append(str(key_values[0]))
                        continue
                    done += 1
                after = rows[-1][: len(table.key)]
            self._report(f"{table.name}: {done}/{total}")
        result.resealed[table.name] = done

    def _reseal(self, table: _Table, columns: Row) -> dict[str, Any]:
        """The table's new column values (assignments' parameters) for one row."""
        cipher, key = self._cipher, self._cur
        if table.name == "messages":
            content, metadata, key_id = columns
            return {
                "content": cipher.seal(cipher.open(content, key_id)),
                "metadata": _jsonb(cipher.seal_json(cipher.open_json(metadata))),
                "key_id": key.id,
            }
        if table.name == "memories":
            user_id, content, metadata, key_id = columns
            plain = cipher.open(content, key_id)
            return {
                "content": cipher.seal(plain),
                "metadata": _jsonb(cipher.seal_json(cipher.open_json(metadata))),
                "key_id": key.id,
                "hash": blind_index.content_hash(key, user_id, plain),
                "tsv": blind_index.tsvector(key, user_id, plain),
            }
        if table.name == "memory_events":
            old, new, key_id = columns
            return {
                "old": None if old is None else cipher.seal(cipher.open(old, key_id)),
                "new": None if new is None else cipher.seal(cipher.open(new, key_id)),
                "key_id": key.id,
            }
        (messages,) = columns
        return {"messages": _jsonb(cipher.seal_json(cipher.open_json(messages)))}

    async def _drop_stale_windows(self) -> int:
        """Drop session windows whose entries are plaintext or another key's."""
        assert self._redis_url is not None
        current = b"\0" + (self._cur.id & (2**64 - 1)).to_bytes(8, "big")
        dropped = 0
        redis = Redis.from_url(self._redis_url)
        try:
            pattern = f"{redis_keys.PREFIX}:*:messages:*"
            async for name in redis.scan_iter(match=pattern, count=500):
                entries = await redis.lrange(name, 0, -1)
                if all(entry.startswith(current) for entry in entries):
                    continue
                # The user id sits in braces (and holds none), so the first
                # "}:messages:" ends it.
                meta = name.replace(b"}:messages:", b"}:session:", 1)
                await redis.delete(name, meta)
                dropped += 1
        finally:
            await redis.aclose()
        self._report(f"session windows: {dropped} dropped (rebuilt from Postgres when read)")
        return dropped


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
