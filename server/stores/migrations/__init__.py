"""Ordered schema migrations, applied at start, once each.

Files are NNNN_name.sql in this package. Each runs in its own transaction and
is recorded in schema_migrations; an advisory lock lets several processes
start at once.
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

# Any constant unique to memoryd: serialises concurrent migrators.
_ADVISORY_LOCK_ID = 0x6D656D6F7279


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every migration, in order."""
    package = resources.files(__name__)
    names = sorted(p.name for p in package.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), package.joinpath(name).read_text()) for name in names]


async def apply_migrations(postgres_url: str) -> list[str]:
    """Apply the migrations not yet applied; returns their versions."""
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            for version, sql in migration_files():
                if version in done:
                    continue
                log.info("applying migration %s", version)
                async with conn.transaction():
                    await conn.execute(sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                    )
                applied.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_ID,))
    return applied


async def pending_migrations(conn: psycopg.AsyncConnection) -> list[str]:
    """Versions not yet applied (health reports NOT_SERVING while any are)."""
    cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cursor.fetchone()
    done: set[str] = set()
    if row and row[0]:
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {r[0] for r in await cursor.fetchall()}
    return [version for version, _ in migration_files() if version not in done]
