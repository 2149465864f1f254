"""Session memory: appending to and reading back a conversation's transcript.

Postgres holds the durable transcript; Redis holds each session's newest
messages. An append writes both inside one Postgres transaction that locks
the session row, so appends to one session get one total order and reach
Redis in that order; if Redis fails, the transaction rolls back and nothing
is stored. Reads come from Redis and fall back to Postgres for what the
window does not hold.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from server import validation
from server.errors import AlreadyExists, InvalidArgument, NotFound
from server.extraction.triggers import AppendTrigger
from server.history import HistorySelector, WindowFields
from server.models import (
    AppendResult,
    HistoryWindow,
    NewMessage,
    Session,
    SessionPage,
    StoredMessage,
    WindowKind,
)
from server.pagination import decode_page_token, encode_page_token, page_size
from server.resources import Resources
from server.settings import Settings
from server.stores import STORE_DOWN_ERRORS, message_codec, session_store
from server.stores.message_codec import EncodedMessage
from server.stores.session_cache import SessionCache
from server.stores.session_store import Connection

if TYPE_CHECKING:
    from server.metrics import SessionWindowReads

# For windows whose size in messages is not known in advance (runs, tokens),
# a small Redis tail is read first, then the whole cached window.
_FIRST_TAIL = 64
_POSTGRES_BATCH = 500
_DELETE_BATCH = 1000
_MAX_RUNS = 1000
_MAX_TOKENS = 10_000_000


def check_new_messages(settings: Settings, messages: list[NewMessage]) -> None:
    """The checks on a request's messages[] (AppendMessages, ExtractMemories)."""
    limit = settings.max_messages_per_append
    if not messages:
        raise InvalidArgument("messages", "must hold at least one message")
    if len(messages) > limit:
        raise InvalidArgument(
            "messages", f"holds {len(messages)} messages; send at most {limit} per call"
        )
    seen: set[str] = set()
    max_bytes = settings.max_message_bytes
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        size = len(message.content.encode())
        if size > max_bytes:
            raise InvalidArgument(
                f"{field}.content", f"is {size} bytes; the maximum is {max_bytes}"
            )
        validation.check_text(f"{field}.content", message.content)
        validation.check_metadata(
            f"{field}.metadata", message.metadata, max_bytes=settings.max_metadata_bytes
        )
        for name in ("id", "name", "run_id"):
            validation.optional_id(
                f"{field}.{name}", getattr(message, name), max_length=settings.max_id_length
            )
        if message.id:
            if message.id in seen:
                raise InvalidArgument(f"{field}.id", f"repeats id {message.id!r}")
            seen.add(message.id)


class SessionService:
    def __init__(
        self, resources: Resources, *, window_reads: SessionWindowReads | None = None
    ) -> None:
        self._settings = resources.settings
        # Counts where each history read was served from (server.metrics); None: not counted.
        self._reads = window_reads
        self._postgres = resources.postgres
        self._tokens = resources.tokens
        self._extraction = AppendTrigger(resources.arq, resources.settings)
        self._cipher = resources.cipher
        self._cache = SessionCache(
            resources.redis_mux, window=self._settings.session_window, cipher=resources.cipher
        )

    # -- validation ------------------------------------------------------

    def _user_id(self, user_id: str) -> str:
        return validation.require_user_id(user_id, max_length=self._settings.max_id_length)

    def _session_id(self, session_id: str) -> str:
        return validation.require_id(
            "session_id", session_id, max_length=self._settings.max_id_length
        )

    # -- writes ----------------------------------------------------------

    async def append(
        self,
        *,
        user_id: str,
        session_id: str,
        agent_id: str,
        messages: list[NewMessage],
        ttl: timedelta | None,
    ) -> AppendResult:
        self._user_id(user_id)
        self._session_id(session_id)
        validation.optional_id("agent_id", agent_id, max_length=self._settings.max_id_length)
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidArgument("ttl", "must be positive (or unset for the session's TTL)")
        check_new_messages(self._settings, messages)
        # Counted before the transaction: tokenising is the slow part of an
        # append and must not hold the session lock.
        token_counts = [self._tokens.count(m.content) for m in messages]
        pushed = False
        try:
            async with self._postgres.connection() as conn, conn.transaction():
                session, stored = await self._insert(
                    conn,
                    user_id=user_id,
                    session_id=session_id,
                    agent_id=agent_id,
                    messages=messages,
                    token_counts=token_counts,
                    ttl=ttl,
                )
                # Still inside the transaction: the session row lock orders the
                # Redis pushes, and a Redis failure rolls the append back.
                await self._cache.append(user_id, session_id, stored, ttl=session.ttl)
                pushed = True
        except BaseException:
            if pushed:
                # The commit failed after the push: the window holds messages
                # Postgres does not. Dropped, so no read serves them; the next
                # read rebuilds it from Postgres.
                with contextlib.suppress(*STORE_DOWN_ERRORS):
                    await self._cache.drop(user_id, [session_id])
            raise
        await self._extraction.after_append(session, appended=len(stored))
        return AppendResult(session=session, messages=stored)

    async def _insert(
        self,
        conn: Connection,
        *,
        user_id: str,
        session_id: str,
        agent_id: str,
        messages: list[NewMessage],
        token_counts: list[int],
        ttl: timedelta | None,
    ) -> tuple[Session, list[StoredMessage]]:
        """Reserve the messages' seqs (locking the session row) and insert
        them; AlreadyExists, writing nothing, when a given id is taken."""
        session = await session_store.reserve_seqs(
            conn,
            user_id=user_id,
            session_id=session_id,
            agent_id=agent_id,
            count=len(messages),
            ttl=ttl,
            default_ttl=self._settings.session_ttl,
        )
        first_seq = session.message_count - len(messages) + 1
        now = datetime.now(UTC)
        stored = [
            StoredMessage(
                seq=first_seq + offset,
                id=m.id or uuid.uuid4().hex,
                role=m.role,
                content=m.content,
                name=m.name,
                run_id=m.run_id,
                create_time=m.create_time or now,
                token_count=tokens,
                metadata=m.metadata,
            )
            for offset, (m, tokens) in enumerate(zip(messages, token_counts, strict=True))
        ]
        given_ids = [m.id for m in messages if m.id]
        if given_ids:
            clashes = await session_store.existing_message_ids(
                conn, user_id=user_id, session_id=session_id, ids=given_ids
            )
            if clashes:
                # A few named, not all: a status message must stay small
                # (gRPC refuses trailers over 8 KiB).
                named = ", ".join(sorted(clashes)[:5])
                more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
                raise AlreadyExists(
                    f"messages with ids {named}{more} are already in session "
                    f"{session_id!r}; nothing was appended"
                )
        await session_store.insert_messages(
            conn, user_id=user_id, session_id=session_id, messages=stored, cipher=self._cipher
        )
        return session, stored

    # -- reads -----------------------------------------------------------

    def history_window(self, kind: WindowKind | None, limit: int) -> HistoryWindow:
        if kind is None:
            return HistoryWindow(WindowKind.LAST_MESSAGES, self._settings.default_history_messages)
        maximum = {
            WindowKind.LAST_MESSAGES: self._settings.max_history_messages,
            WindowKind.LAST_RUNS: _MAX_RUNS,
            WindowKind.MAX_TOKENS: _MAX_TOKENS,
        }[kind]
        return HistoryWindow(kind, validation.require_positive(kind.value, limit, maximum=maximum))

    async def history(
        self, *, user_id: str, session_id: str, window: HistoryWindow
    ) -> list[EncodedMessage]:
        """The newest messages that fit `window`, oldest first, in their stored
        encoding (server.stores.message_codec); empty when the user has no such
        session."""
        self._user_id(user_id)
        self._session_id(session_id)
        if window.kind is WindowKind.LAST_MESSAGES:
            # The hot path: the answer is the tail itself, passed on undecoded.
            tail = await self._cache.tail(user_id, session_id, window.limit)
            if tail is None:
                return await self._rebuild_and_select(user_id, session_id, window)
            if len(tail.entries) == window.limit or tail.reaches_session_start:
                if self._reads is not None:
                    self._reads.hit.inc()
                return tail.entries
            return await self._select_beyond_window(user_id, session_id, window)
        for count in (_FIRST_TAIL, self._settings.session_window):
            tail = await self._cache.tail(user_id, session_id, count)
            if tail is None:
                return await self._rebuild_and_select(user_id, session_id, window)
            selector = HistorySelector[WindowFields](window)
            selector.offer_all(message_codec.window_fields(e) for e in reversed(tail.entries))
            if selector.full or tail.reaches_session_start:
                if self._reads is not None:
                    self._reads.hit.inc()
                return tail.entries[len(tail.entries) - selector.count :]
            if tail.is_whole_window:
                break  # older messages are only in Postgres
        return await self._select_beyond_window(user_id, session_id, window)

    async def _select_beyond_window(
        self, user_id: str, session_id: str, window: HistoryWindow
    ) -> list[EncodedMessage]:
        if self._reads is not None:
            self._reads.beyond_window.inc()
        return await self._select_from_postgres(user_id, session_id, window)

    async def _rebuild_and_select(
        self, user_id: str, session_id: str, window: HistoryWindow
    ) -> list[EncodedMessage]:
        """Reload the Redis window from Postgres and answer from it."""
        if self._reads is not None:
            self._reads.miss.inc()
        async with self._postgres.connection() as conn, conn.transaction():
            session = await session_store.lock_session_for_read(
                conn, user_id=user_id, session_id=session_id
            )
            if session is None:
                return []
            newest = await session_store.newest_messages(
                conn,
                user_id=user_id,
                session_id=session_id,
                limit=self._settings.session_window,
                cipher=self._cipher,
            )
            encoded = [message_codec.encode(m) for m in reversed(newest)]
            if newest:
                await self._cache.load(
                    user_id, session_id, encoded, last_seq=newest[0].seq, ttl=session.ttl
                )
            selector = HistorySelector[StoredMessage](window)
            selector.offer_all(newest)
            if selector.full or len(newest) < self._settings.session_window:
                return encoded[len(encoded) - selector.count :]
        return await self._select_from_postgres(user_id, session_id, window)

    async def _select_from_postgres(
        self, user_id: str, session_id: str, window: HistoryWindow
    ) -> list[EncodedMessage]:
        selector = HistorySelector[StoredMessage](window)
        async with self._postgres.connection() as conn:
            async for message in session_store.iter_older_messages(
                conn,
                user_id=user_id,
                session_id=session_id,
                before_seq=None,
                batch=_POSTGRES_BATCH,
                cipher=self._cipher,
            ):
                if not selector.offer(message):
                    break
        return [message_codec.encode(m) for m in selector.messages()]

    async def list_sessions(
        self, *, user_id: str, agent_id: str, page_size_requested: int, page_token: str
    ) -> SessionPage:
        self._user_id(user_id)
        validation.optional_id("agent_id", agent_id, max_length=self._settings.max_id_length)
        size = page_size(page_size_requested)
        query = ("sessions", user_id, agent_id)
        position = decode_page_token(page_token, query=query)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position[0]), str(position[1]))
            except (IndexError, TypeError, ValueError) as exc:
                raise InvalidArgument("page_token", "is malformed") from exc
        async with self._postgres.connection() as conn:
            sessions = await session_store.list_sessions(
                conn, user_id=user_id, agent_id=agent_id, after=after, limit=size + 1
            )
        next_token = ""
        if len(sessions) > size:
            sessions = sessions[:size]
            last = sessions[-1]
            next_token = encode_page_token(
                [last.update_time.isoformat(), last.session_id], query=query
            )
        return SessionPage(sessions=sessions, next_page_token=next_token)

    # -- deletes ---------------------------------------------------------
    #
    # Each delete drops the Redis windows before its Postgres transaction
    # commits: if Redis fails, nothing is deleted; if the commit fails, the
    # windows are simply rebuilt by the next read. Never a stale window
    # serving a deleted transcript.

    async def delete_session(self, *, user_id: str, session_id: str) -> int:
        self._user_id(user_id)
        self._session_id(session_id)
        async with self._postgres.connection() as conn, conn.transaction():
            if not await session_store.delete_session(conn, user_id=user_id, session_id=session_id):
                raise NotFound(f"user {user_id!r} has no session {session_id!r}")
            await self._cache.drop(user_id, [session_id])
        return 1

    async def delete_user_sessions(self, *, user_id: str) -> int:
        self._user_id(user_id)
        async with self._postgres.connection() as conn, conn.transaction():
            session_ids = await session_store.delete_user_sessions(conn, user_id=user_id)
            if session_ids:
                await self._cache.drop(user_id, session_ids)
        return len(session_ids)

    async def delete_sessions_before(
        self, cutoff: datetime | None, *, user_id: str | None, all_users: bool
    ) -> int:
        """Delete sessions last updated before cutoff: one user's, or every
        user's when all_users is set explicitly."""
        if cutoff is None:
            raise InvalidArgument("cutoff", "is required")
        if all_users and user_id:
            raise InvalidArgument("all_users", "cannot be combined with user_id")
        if not all_users:
            if not user_id:
                raise InvalidArgument(
                    "user_id", "is required (or set all_users to purge every user's sessions)"
                )
            self._user_id(user_id)
        deleted = 0
        while True:  # in batches, so a large purge never holds one huge transaction
            async with self._postgres.connection() as conn, conn.transaction():
                pairs = await session_store.delete_sessions_before(
                    conn, cutoff=cutoff, user_id=user_id or None, limit=_DELETE_BATCH
                )
                by_user: dict[str, list[str]] = defaultdict(list)
                for owner, session_id in pairs:
                    by_user[owner].append(session_id)
                for owner, session_ids in by_user.items():
                    await self._cache.drop(owner, session_ids)
            deleted += len(pairs)
            if len(pairs) < _DELETE_BATCH:
                return deleted
