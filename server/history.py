"""Choosing the newest part of a transcript that fits a history window.

Messages are offered newest first; the selector says when the window is full.
Pure logic, shared by the Redis and the Postgres read paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from server.models import HistoryWindow, WindowKind


class WindowFields(Protocol):
    """What choosing a window reads of a message."""

    @property
    def run_id(self) -> str: ...

    @property
    def token_count(self) -> int: ...


Message = TypeVar("Message", bound=WindowFields)


class HistorySelector(Generic[Message]):
    """Collects messages newest first until the window is full."""

    def __init__(self, window: HistoryWindow) -> None:
        self._window = window
        self._taken: list[Message] = []
        self._tokens = 0
        self._runs = 0
        self._full = False

    @property
    def full(self) -> bool:
        """True once no older message can belong to the window."""
        return self._full

    @property
    def count(self) -> int:
        """How many of the newest messages the window holds so far."""
        return len(self._taken)

    def offer(self, message: Message) -> bool:
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

    def offer_all(self, newest_first: Iterable[Message]) -> None:
        """Offer messages, newest first, until the window is full."""
        for message in newest_first:
            if not self.offer(message):
                return

    def messages(self) -> list[Message]:
        """The window's messages, oldest first."""
        return self._taken[::-1]
