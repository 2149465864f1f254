"""Choosing the newest part of a transcript that fits a history window.

Messages are offered newest first; the selector says when the window is full.
Pure logic, shared by the Redis and the Postgres read paths.
"""

from __future__ import annotations

from server.models import HistoryWindow, StoredMessage, WindowKind


class HistorySelector:
    """Collects messages newest first until the window is full."""

    def __init__(self, window: HistoryWindow) -> None:
        self._window = window
        self._taken: list[StoredMessage] = []
        self._tokens = 0
        self._runs = 0
        self._full = False

    @property
    def full(self) -> bool:
        """True once no older message can belong to the window."""
        return self._full

    def offer(self, message: StoredMessage) -> bool:
        """Take `message` (the next older one) if it fits; False once full."""
        if self._full:
            return False
        kind, limit = self._window.kind, self._window.limit
        if kind is WindowKind.LAST_MESSAGES:
            fits = len(self._taken) < limit
        elif kind is WindowKind.MAX_TOKENS:
            fits = self._tokens + message.token_count <= limit
        else:
            # A run is a stretch of consecutive messages sharing a run_id.
            starts_run = not self._taken or self._taken[-1].run_id != message.run_id
            fits = not starts_run or self._runs < limit
            if fits and starts_run:
                self._runs += 1
        if not fits:
            self._full = True
            return False
        self._taken.append(message)
        self._tokens += message.token_count
        if kind is WindowKind.LAST_MESSAGES and len(self._taken) == limit:
            self._full = True
        return True

    def messages(self) -> list[StoredMessage]:
        """The window's messages, oldest first."""
        return self._taken[::-1]
