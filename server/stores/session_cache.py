"""The hot window of each session in Redis: an append-only list per session.

Appends push only the new messages (RPUSH + LTRIM), never the whole session;
reads take the tail in one round trip and slide the TTL. See
session_cache.lua for the consistency rule between the list and Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any

from server.crypto import SEALED_MARK, Cipher, no_key_error
from server.models import StoredMessage
from server.stores import message_codec, redis_keys
from server.stores.message_codec import EncodedMessage
from server.stores.redis_mux import MultiplexedRedis, Script

_SCRIPT = Script(resources.files("server.stores").joinpath("session_cache.lua").read_text())


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
    def __init__(
        self, redis: MultiplexedRedis, *, window: int, cipher: Cipher | None = None
    ) -> None:
        self._redis = redis
        self._window = window
        # Entries are sealed in Redis when encryption is on, and opened on
        # read: callers always see message_codec encodings.
        self._cipher = cipher if cipher is not None and cipher.enabled else None

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
        if self._cipher is None:
            args.extend(message_codec.encode(m) for m in messages)
        else:
            args.extend(self._cipher.seal_bytes(message_codec.encode(m)) for m in messages)
        await self._call(user_id, session_id, args)

    async def tail(self, user_id: str, session_id: str, count: int) -> CachedTail | None:
        """The newest `count` cached messages, or None when not cached."""
        reply = await self._call(user_id, session_id, ["tail", count])
        if reply is None:
            return None
        last_seq, entries = reply
        if self._cipher is not None:
            entries = [self._cipher.open_bytes(entry) for entry in entries]
        elif entries and (entries[0][:1] == SEALED_MARK or entries[-1][:1] == SEALED_MARK):
            # Sealed by a process with a key: refused with a clear error rather
            # than handed on as a garbled message. The ends suffice: a window
            # holds sealed entries at its start or its end whichever way the
            # setting changed, and checking all would slow the keyless path.
            raise no_key_error()
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
        if self._cipher is None:
            args.extend(entries[-self._window :])
        else:
            args.extend(self._cipher.seal_bytes(entry) for entry in entries[-self._window :])
        await self._call(user_id, session_id, args)

    async def drop(self, user_id: str, session_ids: list[str]) -> None:
        """Forget the windows of these sessions of one user."""
        # One DEL: a user's keys share a hash slot, so this holds on a cluster too.
        keys = [key for session_id in session_ids for key in self._keys(user_id, session_id)]
        if keys:
            await self._redis.execute("DEL", *keys)

    async def _call(self, user_id: str, session_id: str, args: list[Any]) -> Any:
        return await self._redis.eval_script(_SCRIPT, self._keys(user_id, session_id), args)


def _millis(ttl: timedelta) -> int:
    return max(1, int(ttl.total_seconds() * 1000))
