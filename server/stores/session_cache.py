"""The hot window of each session in Redis: an append-only list per session.

Appends push only the new messages (RPUSH + LTRIM), never the whole session;
reads take the tail in one round trip and slide the TTL. See
session_cache.lua for the consistency rule between the list and Postgres.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from server.models import Role, StoredMessage
from server.stores import redis_keys

_SCRIPT = resources.files("server.stores").joinpath("session_cache.lua").read_text()


@dataclass(frozen=True, slots=True)
class CachedTail:
    """The newest cached messages of a session, oldest first."""

    last_seq: int
    cached_count: int
    messages: list[StoredMessage]

    @property
    def is_whole_window(self) -> bool:
        """True when `messages` holds every cached message."""
        return len(self.messages) == self.cached_count

    @property
    def reaches_session_start(self) -> bool:
        return bool(self.messages) and self.messages[0].seq == 1


def encode_message(message: StoredMessage) -> str:
    return json.dumps(
        {
            "s": message.seq,
            "i": message.id,
            "r": message.role.value,
            "c": message.content,
            "n": message.name,
            "u": message.run_id,
            "t": message.create_time.timestamp(),
            "k": message.token_count,
            "m": message.metadata,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


_ROLES = {role.value: role for role in Role}


def decode_message(raw: bytes) -> StoredMessage:
    # On the GetHistory hot path: json.loads is faster on str than on bytes,
    # and a dict lookup beats the Enum constructor.
    entry: dict[str, Any] = json.loads(raw.decode())
    return StoredMessage(
        entry["s"],
        entry["i"],
        _ROLES[entry["r"]],
        entry["c"],
        entry["n"],
        entry["u"],
        datetime.fromtimestamp(entry["t"], UTC),
        entry["k"],
        entry["m"],
    )


class SessionCache:
    def __init__(self, redis: Redis, *, window: int) -> None:
        self._redis = redis
        self._window = window
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
        args.extend(encode_message(m) for m in messages)
        await self._script(keys=self._keys(user_id, session_id), args=args)

    async def tail(self, user_id: str, session_id: str, count: int) -> CachedTail | None:
        """The newest `count` cached messages, or None when not cached."""
        reply = await self._script(keys=self._keys(user_id, session_id), args=["tail", count])
        if reply is None:
            return None
        last_seq, cached_count, entries = reply
        return CachedTail(
            last_seq=int(last_seq),
            cached_count=int(cached_count),
            messages=[decode_message(raw) for raw in entries],
        )

    async def load(
        self, user_id: str, session_id: str, messages: list[StoredMessage], *, ttl: timedelta
    ) -> None:
        """Replace the window with `messages` (the newest of the session, oldest first)."""
        newest = messages[-self._window :]
        args: list[Any] = ["load", newest[-1].seq, _millis(ttl)]
        args.extend(encode_message(m) for m in newest)
        await self._script(keys=self._keys(user_id, session_id), args=args)

    async def drop(self, user_id: str, session_ids: list[str]) -> None:
        """Forget the windows of these sessions of one user."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.delete(*self._keys(user_id, session_id))
            await pipe.execute()


def _millis(ttl: timedelta) -> int:
    return max(1, int(ttl.total_seconds() * 1000))
