"""Session memory against real Postgres and Valkey, through the domain service."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from server.errors import AlreadyExists, InvalidArgument, NotFound
from server.models import HistoryWindow, NewMessage, Role, StoredMessage, WindowKind
from server.resources import Resources
from server.sessions import SessionService
from server.stores import message_codec, redis_keys

pytestmark = pytest.mark.integration


def said(*contents: str, run_id: str = "") -> list[NewMessage]:
    return [NewMessage(role=Role.USER, content=c, run_id=run_id) for c in contents]


def contents(messages: list[StoredMessage]) -> list[str]:
    return [m.content for m in messages]


LAST_20 = HistoryWindow(WindowKind.LAST_MESSAGES, 20)


async def read(
    sessions: SessionService, *, user_id: str, session_id: str, window: HistoryWindow
) -> list[StoredMessage]:
    encoded = await sessions.history(user_id=user_id, session_id=session_id, window=window)
    return [message_codec.decode(entry) for entry in encoded]


async def cached_length(resources: Resources, user_id: str, session_id: str) -> int:
    key = redis_keys.session_messages(user_id, session_id)
    length = await resources.redis.llen(key)  # type: ignore[misc]  # redis-py types sync|async
    return int(length)


async def test_append_assigns_consecutive_seqs_and_reads_back_in_order(
    sessions: SessionService, user_id: str
) -> None:
    first = await sessions.append(
        user_id=user_id, session_id="s", agent_id="coach", messages=said("a", "b"), ttl=None
    )
    second = await sessions.append(
        user_id=user_id, session_id="s", agent_id="", messages=said("c"), ttl=None
    )
    assert [m.seq for m in first.messages + second.messages] == [1, 2, 3]
    assert second.session.message_count == 3
    assert second.session.agent_id == "coach"  # the first append's agent is kept
    history = await read(sessions, user_id=user_id, session_id="s", window=LAST_20)
    assert contents(history) == ["a", "b", "c"]
    assert all(m.token_count > 0 for m in history)


async def test_concurrent_appends_keep_one_total_order(
    sessions: SessionService, resources: Resources, user_id: str
) -> None:
    async def append(i: int) -> None:
        await sessions.append(
            user_id=user_id,
            session_id="busy",
            agent_id="",
            messages=said(f"{i}-a", f"{i}-b"),
            ttl=None,
        )

    await asyncio.gather(*(append(i) for i in range(20)))
    cached = await read(
        sessions,
        user_id=user_id,
        session_id="busy",
        window=HistoryWindow(WindowKind.LAST_MESSAGES, 100),
    )
    assert [m.seq for m in cached] == list(range(1, 41))
    # Each append's two messages stay adjacent, and Redis agrees with Postgres.
    for a, b in zip(cached[::2], cached[1::2], strict=True):
        assert a.content.removesuffix("-a") == b.content.removesuffix("-b")
    await resources.redis.delete(redis_keys.session_meta(user_id, "busy"))
    rebuilt = await read(
        sessions,
        user_id=user_id,
        session_id="busy",
        window=HistoryWindow(WindowKind.LAST_MESSAGES, 100),
    )
    assert rebuilt == cached


async def test_acknowledged_append_survives_losing_redis(
    sessions: SessionService, resources: Resources, user_id: str
) -> None:
    await sessions.append(
        user_id=user_id, session_id="s", agent_id="", messages=said("kept", "too"), ttl=None
    )
    await resources.redis.flushall()
    history = await read(sessions, user_id=user_id, session_id="s", window=LAST_20)
    assert contents(history) == ["kept", "too"]
    # ...and the window was rebuilt, so appends continue it.
    await sessions.append(
        user_id=user_id, session_id="s", agent_id="", messages=said("more"), ttl=None
    )
    assert await cached_length(resources, user_id, "s") == 3


async def test_an_append_whose_commit_fails_leaves_no_message_in_the_window(
    sessions: SessionService, resources: Resources, user_id: str
) -> None:
    """The window is pushed inside the transaction, before COMMIT; a commit
    that then fails must not leave its messages to be read from Redis."""
    await sessions.append(
        user_id=user_id, session_id="s", agent_id="", messages=said("kept"), ttl=None
    )
    # A deferred constraint trigger fails this user's next insert at COMMIT,
    # after the push. (Scoped to the user: other tests share the database.)
    function = f"fail_at_commit_{uuid.uuid4().hex[:8]}"
    async with resources.postgres.connection() as conn:
        await conn.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'commit refused'; END $$"
        )
        await conn.execute(
            f"CREATE CONSTRAINT TRIGGER {function} AFTER INSERT ON messages"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            f" WHEN (NEW.user_id = '{user_id}') EXECUTE FUNCTION {function}()"
        )
        await conn.commit()
    try:
        with pytest.raises(Exception, match="commit refused"):
            await sessions.append(
                user_id=user_id, session_id="s", agent_id="", messages=said("never"), ttl=None
            )
    finally:
        async with resources.postgres.connection() as conn:
            await conn.execute(f"DROP FUNCTION {function} CASCADE")
    history = await read(sessions, user_id=user_id, session_id="s", window=LAST_20)
    assert contents(history) == ["kept"]
    await sessions.append(
        user_id=user_id, session_id="s", agent_id="", messages=said("next"), ttl=None
    )
    history = await read(sessions, user_id=user_id, session_id="s", window=LAST_20)
    assert [(m.seq, m.content) for m in history] == [(1, "kept"), (2, "next")]


async def test_history_windows_by_messages_runs_and_tokens(
    sessions: SessionService, user_id: str
) -> None:
    for run, texts in (("r1", ("a1", "a2")), ("r2", ("b1",)), ("r3", ("c1", "c2", "c3"))):
        await sessions.append(
            user_id=user_id,
            session_id="s",
            agent_id="",
            messages=said(*texts, run_id=run),
            ttl=None,
        )

    async def window(kind: WindowKind, limit: int) -> list[str]:
        found = await read(
            sessions, user_id=user_id, session_id="s", window=HistoryWindow(kind, limit)
        )
        return contents(found)

    assert await window(WindowKind.LAST_MESSAGES, 2) == ["c2", "c3"]
    assert await window(WindowKind.LAST_RUNS, 2) == ["b1", "c1", "c2", "c3"]
    assert await window(WindowKind.LAST_RUNS, 10) == ["a1", "a2", "b1", "c1", "c2", "c3"]
    everything = await read(
        sessions,
        user_id=user_id,
        session_id="s",
        window=HistoryWindow(WindowKind.LAST_MESSAGES, 10),
    )
    newest_four = sum(m.token_count for m in everything[-4:])
    assert await window(WindowKind.MAX_TOKENS, newest_four) == ["b1", "c1", "c2", "c3"]
    # Whole messages only: one token short drops the oldest of the four.
    assert await window(WindowKind.MAX_TOKENS, newest_four - 1) == ["c1", "c2", "c3"]


async def test_history_beyond_the_redis_window_reads_postgres(
    resources: Resources, user_id: str
) -> None:
    small = SessionService(
        Resources(
            settings=resources.settings.model_copy(update={"session_window": 5}),
            postgres=resources.postgres,
            redis=resources.redis,
            redis_mux=resources.redis_mux,
            tokens=resources.tokens,
            embedder=resources.embedder,
            arq=resources.arq,
        )
    )
    await small.append(
        user_id=user_id,
        session_id="long",
        agent_id="",
        messages=said(*(str(i) for i in range(12))),
        ttl=None,
    )
    assert await cached_length(resources, user_id, "long") == 5
    found = await read(
        small, user_id=user_id, session_id="long", window=HistoryWindow(WindowKind.LAST_MESSAGES, 8)
    )
    assert contents(found) == [str(i) for i in range(4, 12)]
    runs = await read(
        small, user_id=user_id, session_id="long", window=HistoryWindow(WindowKind.MAX_TOKENS, 100)
    )
    assert len(runs) == 12


async def test_ttl_slides_on_read_and_can_be_set_per_call(
    sessions: SessionService, resources: Resources, user_id: str
) -> None:
    await sessions.append(
        user_id=user_id,
        session_id="s",
        agent_id="",
        messages=said("x"),
        ttl=timedelta(seconds=30),
    )
    key = redis_keys.session_messages(user_id, "s")
    assert 25_000 < await resources.redis.pttl(key) <= 30_000
    await resources.redis.pexpire(key, 1000)
    await resources.redis.pexpire(redis_keys.session_meta(user_id, "s"), 1000)
    await read(sessions, user_id=user_id, session_id="s", window=LAST_20)
    assert await resources.redis.pttl(key) > 25_000


async def test_another_users_session_reads_as_empty(sessions: SessionService, user_id: str) -> None:
    await sessions.append(
        user_id=user_id, session_id="private", agent_id="", messages=said("secret"), ttl=None
    )
    other = await read(sessions, user_id=user_id + "-x", session_id="private", window=LAST_20)
    assert other == []


async def test_duplicate_message_id_is_rejected_and_nothing_is_appended(
    sessions: SessionService, user_id: str
) -> None:
    first = NewMessage(role=Role.USER, content="one", id="m1")
    await sessions.append(user_id=user_id, session_id="s", agent_id="", messages=[first], ttl=None)
    again = [
        NewMessage(role=Role.USER, content="two", id="m2"),
        NewMessage(role=Role.USER, content="dup", id="m1"),
    ]
    with pytest.raises(AlreadyExists, match="m1"):
        await sessions.append(
            user_id=user_id, session_id="s", agent_id="", messages=again, ttl=None
        )
    history = await read(sessions, user_id=user_id, session_id="s", window=LAST_20)
    assert contents(history) == ["one"]
    # The failed append consumed no seq.
    later = await sessions.append(
        user_id=user_id, session_id="s", agent_id="", messages=said("three"), ttl=None
    )
    assert later.messages[0].seq == 2


async def test_list_sessions_pages_newest_first(sessions: SessionService, user_id: str) -> None:
    for i in range(5):
        await sessions.append(
            user_id=user_id,
            session_id=f"s{i}",
            agent_id="a" if i % 2 else "b",
            messages=said("hi"),
            ttl=None,
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await sessions.list_sessions(
            user_id=user_id, agent_id="", page_size_requested=2, page_token=token
        )
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["s4", "s3", "s2", "s1", "s0"]
    only_a = await sessions.list_sessions(
        user_id=user_id, agent_id="a", page_size_requested=0, page_token=""
    )
    assert [s.session_id for s in only_a.sessions] == ["s3", "s1"]
    first = await sessions.list_sessions(
        user_id=user_id, agent_id="", page_size_requested=2, page_token=""
    )
    with pytest.raises(InvalidArgument, match="different query"):
        await sessions.list_sessions(
            user_id=user_id + "-x",
            agent_id="",
            page_size_requested=2,
            page_token=first.next_page_token,
        )


async def test_deletes_remove_redis_and_postgres_copies(
    sessions: SessionService, resources: Resources, user_id: str
) -> None:
    for sid in ("a", "b", "c"):
        await sessions.append(
            user_id=user_id, session_id=sid, agent_id="", messages=said(sid), ttl=None
        )
    assert await sessions.delete_session(user_id=user_id, session_id="a") == 1
    assert not await resources.redis.exists(redis_keys.session_messages(user_id, "a"))
    assert await read(sessions, user_id=user_id, session_id="a", window=LAST_20) == []
    with pytest.raises(NotFound):
        await sessions.delete_session(user_id=user_id, session_id="a")
    assert await sessions.delete_user_sessions(user_id=user_id) == 2
    assert await read(sessions, user_id=user_id, session_id="b", window=LAST_20) == []
    page = await sessions.list_sessions(
        user_id=user_id, agent_id="", page_size_requested=0, page_token=""
    )
    assert page.sessions == []


async def test_delete_sessions_before_cutoff_keeps_newer_and_other_users(
    sessions: SessionService, user_id: str
) -> None:
    other = user_id + "-other"
    await sessions.append(
        user_id=user_id, session_id="old", agent_id="", messages=said("o"), ttl=None
    )
    await sessions.append(
        user_id=other, session_id="old", agent_id="", messages=said("o"), ttl=None
    )
    cutoff = datetime.now(UTC)
    await sessions.append(
        user_id=user_id, session_id="new", agent_id="", messages=said("n"), ttl=None
    )
    assert await sessions.delete_sessions_before(cutoff, user_id=user_id, all_users=False) == 1
    assert contents(await read(sessions, user_id=user_id, session_id="new", window=LAST_20)) == [
        "n"
    ]
    assert contents(await read(sessions, user_id=other, session_id="old", window=LAST_20)) == ["o"]
    with pytest.raises(InvalidArgument, match="all_users"):
        await sessions.delete_sessions_before(cutoff, user_id=None, all_users=False)
