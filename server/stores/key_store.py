"""The keys that have sealed data in this database (table encryption_keys)."""

from __future__ import annotations

from server.crypto import Cipher
from server.stores.session_store import Connection


async def register(conn: Connection, *, key_id: int) -> None:
    """Record that this key seals data from now on (before it seals any)."""
    await conn.execute(
        "INSERT INTO encryption_keys (key_id) VALUES (%s) ON CONFLICT DO NOTHING", (key_id,)
    )


async def registered(conn: Connection) -> list[int]:
    cursor = await conn.execute("SELECT key_id FROM encryption_keys ORDER BY create_time")
    return [row[0] for row in await cursor.fetchall()]


async def forget_all_but(conn: Connection, *, key_id: int) -> list[int]:
    """Forget every other key (after `memoryd rekey` re-sealed all of their data)."""
    cursor = await conn.execute(
        "DELETE FROM encryption_keys WHERE key_id <> %s RETURNING key_id", (key_id,)
    )
    return [row[0] for row in await cursor.fetchall()]


async def check(conn: Connection, cipher: Cipher) -> None:
    """Register the sealing key; FailedPrecondition when data was sealed with a
    key the cipher lacks (or the cipher is disabled and any data is sealed)."""
    known = await registered(conn)
    for key_id in known:
        cipher.key(key_id)  # raises, naming the key, when it is not configured
    # Only once the keys match the data: a wrong key is never recorded.
    if cipher.key_id is not None and cipher.key_id not in known:
        await register(conn, key_id=cipher.key_id)
