"""The durable transcript in Postgres: sessions and their messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from server.crypto import Cipher
from server.models import Role, Session, StoredMessage

Connection = AsyncConnection[TupleRow]

_SESSION_COLUMNS = (
    "user_id, session_id, agent_id, message_count, create_time, update_time, ttl_ms, extracted_seq"
)
_MESSAGE_COLUMNS = (
    "seq, id, role, content, name, run_id, create_time, token_count, metadata, key_id"
)


def _session(row: Sequence[Any]) -> Session:
    user_id, session_id, agent_id, count, created, updated, ttl_ms, extracted = row
    return Session(
        user_id=user_id,
        session_id=session_id,
        agent_id=agent_id,
        message_count=count,
        create_time=created,
        update_time=updated,
        ttl=timedelta(milliseconds=ttl_ms),
        extracted_seq=extracted,
    )


def _message(row: Sequence[Any], cipher: Cipher) -> StoredMessage:
    seq, id_, role, content, name, run_id, created, tokens, metadata, key_id = row
    if key_id is not None:  # sealed (content and metadata together)
        content = cipher.open(content, key_id)
        metadata = cipher.open_json(metadata)
    return StoredMessage(
        seq=seq,
        id=id_,
        role=Role(role),
        content=content,
        name=name,
        run_id=run_id,
        create_time=created,
        token_count=tokens,
        metadata=metadata,
    )


def _message_params(
    user_id: str, session_id: str, m: StoredMessage, cipher: Cipher
) -> tuple[Any, ...]:
    """One row of insert_messages: content and metadata sealed when the cipher is on."""
    content: str = m.content
    metadata: Any = m.metadata
    if cipher.enabled:
        content, metadata = cipher.seal(content), cipher.seal_json(metadata)
    return (
        user_id,
        session_id,
        m.seq,
        m.id,
        m.role.value,
        m.name,
        content,
        m.run_id,
        None if metadata is None else Jsonb(metadata),
        m.token_count,
        m.create_time,
        cipher.key_id,
    )


async def reserve_seqs(
    conn: Connection,
    *,
    user_id: str,
    session_id: str,
    agent_id: str,
    count: int,
    ttl: timedelta | None,
    default_ttl: timedelta,
) -> Session:
    """Create or extend a session by `count` messages. Locks the session row
    until the transaction ends, so appends to one session are serialised and
    the new messages take seqs message_count-count+1 .. message_count."""
    ttl_ms = None if ttl is None else int(ttl.total_seconds() * 1000)
    cursor = await conn.execute(
        f"""
        INSERT INTO sessions (user_id, session_id, agent_id, message_count, ttl_ms)
        VALUES (%(user)s, %(session)s, %(agent)s, %(count)s, COALESCE(%(ttl)s, %(default_ttl)s))
        ON CONFLICT (user_id, session_id) DO UPDATE SET
            message_count = sessions.message_count + EXCLUDED.message_count,
            update_time = now(),
            ttl_ms = COALESCE(%(ttl)s, sessions.ttl_ms)
        RETURNING {_SESSION_COLUMNS}
        """,
        {
            "user": user_id,
            "session": session_id,
            "agent": agent_id,
            "count": count,
            "ttl": ttl_ms,
            "default_ttl": int(default_ttl.total_seconds() * 1000),
        },
    )
    row = await cursor.fetchone()
    assert row is not None  # INSERT .. RETURNING always yields the row
    return _session(row)


async def insert_messages(
    conn: Connection,
    *,
    user_id: str,
    session_id: str,
    messages: list[StoredMessage],
    cipher: Cipher,
) -> None:
    async with conn.cursor() as cursor:
        await cursor.executemany(
            """
            INSERT INTO messages (user_id, session_id, seq, id, role, name, content, run_id,
                                  metadata, token_count, create_time, key_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [_message_params(user_id, session_id, m, cipher) for m in messages],
        )


async def existing_message_ids(
    conn: Connection, *, user_id: str, session_id: str, ids: list[str]
) -> list[str]:
    cursor = await conn.execute(
        "SELECT id FROM messages WHERE user_id = %s AND session_id = %s AND id = ANY(%s)",
        (user_id, session_id, ids),
    )
    return [row[0] for row in await cursor.fetchall()]


async def lock_session_for_read(
    conn: Connection, *, user_id: str, session_id: str
) -> Session | None:
    """The session, share-locked until the transaction ends: appends wait, so
    a window rebuilt under this lock cannot miss a concurrent append."""
    cursor = await conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = %s AND session_id = %s FOR SHARE",
        (user_id, session_id),
    )
    row = await cursor.fetchone()
    return None if row is None else _session(row)


async def newest_messages(
    conn: Connection,
    *,
    user_id: str,
    session_id: str,
    limit: int,
    cipher: Cipher,
    before_seq: int | None = None,
) -> list[StoredMessage]:
    """Up to `limit` messages older than before_seq (or the newest), newest first."""
    cursor = await conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        " WHERE user_id = %s AND session_id = %s AND seq < %s"
        " ORDER BY seq DESC LIMIT %s",
        (user_id, session_id, before_seq if before_seq is not None else 2**62, limit),
    )
    return [_message(row, cipher) for row in await cursor.fetchall()]


async def messages_between(
    conn: Connection,
    *,
    user_id: str,
    session_id: str,
    after_seq: int,
    through_seq: int,
    cipher: Cipher,
) -> list[StoredMessage]:
    """Messages with after_seq < seq <= through_seq, oldest first."""
    cursor = await conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        " WHERE user_id = %s AND session_id = %s AND seq > %s AND seq <= %s ORDER BY seq",
        (user_id, session_id, after_seq, through_seq),
    )
    return [_message(row, cipher) for row in await cursor.fetchall()]


async def get_session(conn: Connection, *, user_id: str, session_id: str) -> Session | None:
    cursor = await conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = %s AND session_id = %s",
        (user_id, session_id),
    )
    row = await cursor.fetchone()
    return None if row is None else _session(row)


async def iter_older_messages(
    conn: Connection,
    *,
    user_id: str,
    session_id: str,
    before_seq: int | None,
    batch: int,
    cipher: Cipher,
) -> AsyncIterator[StoredMessage]:
    """Messages newest first, older than before_seq, fetched in batches."""
    while True:
        rows = await newest_messages(
            conn,
            user_id=user_id,
            session_id=session_id,
            limit=batch,
            before_seq=before_seq,
            cipher=cipher,
        )
        for message in rows:
            yield message
        if len(rows) < batch:
            return
        before_seq = rows[-1].seq


async def list_sessions(
    conn: Connection,
    *,
    user_id: str,
    agent_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Session]:
    """A user's sessions, most recently updated first, after a keyset position."""
    conditions = ["user_id = %(user)s"]
    params: dict[str, Any] = {"user": user_id, "limit": limit}
    if agent_id:
        conditions.append("agent_id = %(agent)s")
        params["agent"] = agent_id
    if after is not None:
        # Both sort keys descend, so one row comparison is the keyset.
        conditions.append("(update_time, session_id) < (%(time)s, %(session)s)")
        params["time"], params["session"] = after
    cursor = await conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE {' AND '.join(conditions)}"
        " ORDER BY update_time DESC, session_id DESC LIMIT %(limit)s",
        params,
    )
    return [_session(row) for row in await cursor.fetchall()]


async def delete_session(conn: Connection, *, user_id: str, session_id: str) -> bool:
    cursor = await conn.execute(
        "DELETE FROM sessions WHERE user_id = %s AND session_id = %s", (user_id, session_id)
    )
    return cursor.rowcount > 0


async def delete_user_sessions(conn: Connection, *, user_id: str) -> list[str]:
    cursor = await conn.execute(
        "DELETE FROM sessions WHERE user_id = %s RETURNING session_id", (user_id,)
    )
    return [row[0] for row in await cursor.fetchall()]


async def delete_sessions_before(
    conn: Connection, *, cutoff: datetime, user_id: str | None, limit: int
) -> list[tuple[str, str]]:
    """Delete up to `limit` sessions last updated before cutoff; (user, session) pairs."""
    user_filter = "" if user_id is None else "AND user_id = %(user)s"
    cursor = await conn.execute(
        f"""
        DELETE FROM sessions WHERE (user_id, session_id) IN (
            SELECT user_id, session_id FROM sessions
            WHERE update_time < %(cutoff)s {user_filter}
            LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
        RETURNING user_id, session_id
        """,
        {"cutoff": cutoff, "user": user_id, "limit": limit},
    )
    return [(row[0], row[1]) for row in await cursor.fetchall()]
