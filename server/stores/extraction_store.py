"""Extraction jobs and the per-session extraction watermark in Postgres.

Every statement names the user, except the workers' sweeps (idle sessions,
jobs whose enqueue was lost), which look across users by design.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from server.crypto import Cipher
from server.extraction.models import Counts, Job, JobState, Trigger
from server.models import JsonObject
from server.stores.session_store import Connection

_COLUMNS = """id::text, user_id, coalesce(session_id, ''), state, error, trigger, extractor,
    message_count, created_count, updated_count, deleted_count, noop_count, attempts,
    create_time, update_time"""


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        user_id=row[1],
        session_id=row[2],
        state=JobState(row[3]),
        error=row[4],
        trigger=Trigger(row[5]),
        extractor=row[6],
        message_count=row[7],
        created_count=row[8],
        updated_count=row[9],
        deleted_count=row[10],
        noop_count=row[11],
        attempts=row[12],
        create_time=row[13],
        update_time=row[14],
    )


async def _one(conn: Connection, sql: str, params: dict[str, Any]) -> Job | None:
    cursor = await conn.execute(sql, params)
    row = await cursor.fetchone()
    return None if row is None else _job(row)


async def queue_session_job(
    conn: Connection, *, user_id: str, session_id: str, trigger: Trigger
) -> Job:
    """A new QUEUED job for the session, or the one already queued: at most
    one waits per session, and it will read every message not yet extracted."""
    params = {"id": uuid.uuid4(), "user": user_id, "session": session_id, "trigger": trigger}
    inserted = await _one(
        conn,
        f"""
        INSERT INTO extraction_jobs (id, user_id, session_id, state, trigger)
        VALUES (%(id)s, %(user)s, %(session)s, 1, %(trigger)s)
        ON CONFLICT (user_id, session_id) WHERE state = 1 AND session_id IS NOT NULL DO NOTHING
        RETURNING {_COLUMNS}
        """,
        params,
    )
    if inserted is not None:
        return inserted
    queued = await _one(
        conn,
        f"SELECT {_COLUMNS} FROM extraction_jobs"
        " WHERE user_id = %(user)s AND session_id = %(session)s AND state = 1",
        params,
    )
    if queued is None:  # it started between our two statements: queue another
        return await queue_session_job(
            conn, user_id=user_id, session_id=session_id, trigger=trigger
        )
    return queued


async def queue_messages_job(
    conn: Connection, *, user_id: str, messages: list[JsonObject], cipher: Cipher
) -> Job:
    """A QUEUED job that extracts the given messages (stored with it, sealed
    when encryption is on)."""
    stored: Any = cipher.seal_json(messages) if cipher.enabled else messages
    job = await _one(
        conn,
        f"""
        INSERT INTO extraction_jobs (id, user_id, state, trigger, messages, message_count)
        VALUES (%(id)s, %(user)s, 1, 'api', %(messages)s, %(count)s)
        RETURNING {_COLUMNS}
        """,
        {"id": uuid.uuid4(), "user": user_id, "messages": Jsonb(stored), "count": len(messages)},
    )
    assert job is not None  # INSERT .. RETURNING always yields the row
    return job


async def get_job(
    conn: Connection, *, user_id: str, job_id: str, for_update: bool = False
) -> Job | None:
    lock = " FOR UPDATE" if for_update else ""
    return await _one(
        conn,
        f"SELECT {_COLUMNS} FROM extraction_jobs WHERE user_id = %(user)s AND id = %(id)s{lock}",
        {"user": user_id, "id": job_id},
    )


async def next_session_job(conn: Connection, *, user_id: str, session_id: str) -> Job | None:
    """The session's oldest unfinished job (a RUNNING one is a retry of a
    killed or failed attempt), locked; None when another worker holds it."""
    return await _one(
        conn,
        f"""
        SELECT {_COLUMNS} FROM extraction_jobs
        WHERE user_id = %(user)s AND session_id = %(session)s AND state IN (1, 2)
        ORDER BY create_time, id LIMIT 1 FOR UPDATE SKIP LOCKED
        """,
        {"user": user_id, "session": session_id},
    )


async def job_messages(
    conn: Connection, *, user_id: str, job_id: str, cipher: Cipher
) -> list[JsonObject]:
    cursor = await conn.execute(
        "SELECT messages FROM extraction_jobs WHERE user_id = %s AND id = %s", (user_id, job_id)
    )
    row = await cursor.fetchone()
    return list(cipher.open_json(row[0])) if row and row[0] else []


async def start(
    conn: Connection,
    *,
    user_id: str,
    job_id: str,
    extractor: str,
    seqs: tuple[int, int] | None,
    message_count: int,
) -> None:
    """Mark the job RUNNING for one more attempt over the given seq range."""
    await conn.execute(
        """
        UPDATE extraction_jobs SET state = 2, extractor = %(extractor)s,
            first_seq = %(first)s, last_seq = %(last)s, message_count = %(count)s,
            attempts = attempts + 1, update_time = now()
        WHERE user_id = %(user)s AND id = %(id)s
        """,
        {
            "user": user_id,
            "id": job_id,
            "extractor": extractor,
            "first": seqs[0] if seqs else None,
            "last": seqs[1] if seqs else None,
            "count": message_count,
        },
    )


async def succeed(conn: Connection, *, user_id: str, job_id: str, counts: Counts) -> bool:
    """RUNNING -> SUCCEEDED with its counts; False when the job was not
    running (another attempt finished it first)."""
    cursor = await conn.execute(
        """
        UPDATE extraction_jobs SET state = 3, error = '', messages = NULL, created_count = %(c)s,
            updated_count = %(u)s, deleted_count = %(d)s, noop_count = %(n)s,
            update_time = now()
        WHERE user_id = %(user)s AND id = %(id)s AND state = 2
        """,
        {
            "user": user_id,
            "id": job_id,
            "c": counts.created,
            "u": counts.updated,
            "d": counts.deleted,
            "n": counts.noop,
        },
    )
    return cursor.rowcount == 1


async def set_error(
    conn: Connection, *, user_id: str, job_id: str, error: str, final: bool
) -> None:
    """Record an attempt's error; `final` marks the job FAILED."""
    await conn.execute(
        "UPDATE extraction_jobs SET error = %(error)s, update_time = now(),"
        " state = CASE WHEN %(final)s THEN 4 ELSE state END,"
        # A finished job keeps no copy of the caller's messages.
        " messages = CASE WHEN %(final)s THEN NULL ELSE messages END"
        " WHERE user_id = %(user)s AND id = %(id)s AND state IN (1, 2)",
        {"user": user_id, "id": job_id, "error": error, "final": final},
    )


async def advance_watermark(
    conn: Connection, *, user_id: str, session_id: str, from_seq: int, to_seq: int
) -> bool:
    """Move the session's extracted_seq from from_seq to to_seq; False when it
    had moved already (another attempt committed the same messages)."""
    cursor = await conn.execute(
        "UPDATE sessions SET extracted_seq = %s"
        " WHERE user_id = %s AND session_id = %s AND extracted_seq = %s",
        (to_seq, user_id, session_id, from_seq),
    )
    return cursor.rowcount == 1


async def idle_sessions(
    conn: Connection, *, idle_before: datetime, limit: int
) -> list[tuple[str, str]]:
    """(user, session) of sessions untouched since idle_before with messages not
    yet extracted, and no job open or failed since their last message."""
    cursor = await conn.execute(
        """
        SELECT s.user_id, s.session_id FROM sessions s
        WHERE s.message_count > s.extracted_seq AND s.update_time < %(before)s
            AND NOT EXISTS (
                SELECT 1 FROM extraction_jobs j
                WHERE j.user_id = s.user_id AND j.session_id = s.session_id
                    AND (j.state IN (1, 2) OR (j.state = 4 AND j.update_time > s.update_time)))
        ORDER BY s.update_time LIMIT %(limit)s
        """,
        {"before": idle_before, "limit": limit},
    )
    return [(row[0], row[1]) for row in await cursor.fetchall()]


async def stalled_jobs(conn: Connection, *, before: datetime, limit: int) -> list[Job]:
    """Jobs queued or running, untouched since `before`: their arq job may
    be lost (Redis down or restarted empty) or their worker dead."""
    cursor = await conn.execute(
        f"""
        SELECT {_COLUMNS} FROM extraction_jobs
        WHERE state IN (1, 2) AND update_time < %(before)s
        ORDER BY update_time LIMIT %(limit)s
        """,
        {"before": before, "limit": limit},
    )
    return [_job(row) for row in await cursor.fetchall()]


async def delete_finished_jobs(conn: Connection, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` jobs that finished before `before` (every user's)."""
    cursor = await conn.execute(
        """
        DELETE FROM extraction_jobs WHERE id IN (
            SELECT id FROM extraction_jobs WHERE state IN (3, 4) AND update_time < %s
            LIMIT %s FOR UPDATE SKIP LOCKED)
        """,
        (before, limit),
    )
    return cursor.rowcount
