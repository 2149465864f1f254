"""The hot window of each session in Redis: an append-only list per session.

Appends push only the new messages (RPUSH + LTRIM), never the whole session;
reads take the tail in one round trip and slide the TTL. See
session_cache.lua for the consistency rule between the list and Postgres.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from server.models import StoredMessage
from server.stores import message_codec, redis_keys
from server.stores.message_codec import EncodedMessage

_SCRIPT = resources.files("server.stores").joinpath("session_cache.lua").read_text()


@dataclass(frozen=True, slots=True)
class CachedTail:
    """The newest cached messages of a session, oldest first, encoded."""

    last_seq: int
    entries: list[EncodedMessage]
    # True when `entries` holds every cached message of the session.
    is_whole_window: bool

    @property
    def reaches_session_start(self) -> bool:
        return self.last_seq == len(self.entries)


class SessionCache:
    def __init__(self, redis: Redis, *, window: int, timeout: timedelta) -> None:
        self._redis = redis
        self._window = window
        self._timeout = timeout.total_seconds()
        self._script = redis.register_script(_SCRIPT)

    @staticmethod
    def _keys(user_id: str, session_id: str) -> list[str]:
        return [
            redis_keys.session_messages(user_id, session_id),
            redis_keys.session_meta(user_id, session_id),
        ]

    async def append(
        self, user_id: str, session_id: str, messages: list[StoredMessage], *, ttl: timedelta
    ) -> None:
        """Push messages that continue the cached window; if they do not, the
        window is dropped and rebuilt by the next read."""
        args: list[Any] = [
            "append",
            messages[0].seq,
            messages[-1].seq,
            _millis(ttl),
            self._window,
        ]
        args.extend(message_codec.encode(m) for m in messages)
        await self._call(user_id, session_id, args)

    async def tail(self, user_id: str, session_id: str, count: int) -> CachedTail | None:
        """The newest `count` cached messages, or None when not cached."""
        reply = await self._call(user_id, session_id, ["tail", count])
        if reply is None:
            return None
        last_seq, entries = reply
        return CachedTail(
            last_seq=int(last_seq),
            entries=entries,
            # The list is trimmed to the window, so a short reply is all of it.
            is_whole_window=len(entries) < count or count >= self._window,
        )

    async def load(
        self,
        user_id: str,
        session_id: str,
        entries: list[EncodedMessage],
        *,
        last_seq: int,
        ttl: timedelta,
    ) -> None:
        """Replace the window with `entries`: the session's newest messages,
        oldest first, the last of them numbered last_seq."""
        args: list[Any] = ["load", last_seq, _millis(ttl)]
        args.extend(entries[-self._window :])
        await self._call(user_id, session_id, args)

    async def drop(self, user_id: str, session_ids: list[str]) -> None:
        """Forget the windows of these sessions of one user."""
        async with asyncio.timeout(self._timeout), self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.delete(*self._keys(user_id, session_id))
            await pipe.execute()

    async def _call(self, user_id: str, session_id: str, args: list[Any]) -> Any:
        # One timeout around the whole call: redis-py's per-read socket
        # timeouts cost more CPU than the rest of a history read's Redis work.
        async with asyncio.timeout(self._timeout):
            return await self._script(keys=self._keys(user_id, session_id), args=args)


def _millis(ttl: timedelta) -> int:
    return max(1, int(ttl.total_seconds() * 1000))
