"""The one interface every system under comparison is driven through.

An adapter starts its system (and everything it needs) in `start`, stops all
of it in `stop`, and answers the workload's calls. Calls are async so that one
event loop can keep 64 of them in flight; adapters of synchronous libraries
forward them to a driver process (driver_client.py).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]


class PeerUnavailable(RuntimeError):
    """The system cannot run here; the message says exactly why (it goes in the table)."""


@dataclass(frozen=True, slots=True)
class Item:
    """A memory to store: `source_id` comes back with search hits, which is how
    recall is scored and how a write is recognised as searchable."""

    source_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    source_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Turn:
    role: str
    content: str


class PeerAdapter(abc.ABC):
    """A system under comparison."""

    name: str = ""
    # False where the system has no session (conversation history) API: the
    # history figures then read "n/a: no sessions".
    has_sessions: bool = True
    # What the table should say about how this system ran (search mode, model...).
    notes: str = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Install what is missing, start the system, wait until it serves."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop everything `start` started; safe to call after a failed start."""

    @abc.abstractmethod
    async def add_memory(self, user_id: str, item: Item) -> None:
        """Store one memory; returns when the system acknowledges it."""

    async def add_memories(self, user_id: str, items: Sequence[Item]) -> None:
        """Store many (bulk load before measuring); batched where the API can."""
        for item in items:
            await self.add_memory(user_id, item)

    @abc.abstractmethod
    async def search(self, user_id: str, query: str, k: int) -> list[Hit]:
        """The user's top-k memories for `query`, best first, by the system's own search."""

    async def search_by_meaning(self, user_id: str, query: str, k: int) -> list[Hit]:
        """Search by the embedding alone, where the system has other modes: a
        memory counts as searchable once its vector is indexed."""
        return await self.search(user_id, query, k)

    async def append_session(self, user_id: str, session_id: str, turns: Sequence[Turn]) -> None:
        raise NotImplementedError(f"{self.name} has no sessions")

    async def history(self, user_id: str, session_id: str, last: int) -> list[Turn]:
        raise NotImplementedError(f"{self.name} has no sessions")

    async def delete_user(self, user_id: str) -> None:  # noqa: B027 - optional cleanup
        """Remove the user's memories (the workload calls it for each of its users)."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """The root processes of the system; their children are counted too."""


def resident_bytes(roots: Iterable[int]) -> int:
    """Memory held by the processes `roots` and all their children.

    PSS (proportional set size) where the kernel gives it: Postgres backends
    map the same shared buffers, and summing their RSS would count those once
    per backend. RSS where PSS is not readable."""
    seen: set[int] = set()
    total = 0
    for pid in roots:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += _pss_or_rss(process)
    return total


def _pss_or_rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):
        return int(process.memory_info().rss)


def pids_with_cmdline(*fragments: str) -> list[int]:
    """Processes whose command line contains every fragment (embedded stores
    started by other code: found by their data dir or port)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if cmdline and all(fragment in cmdline for fragment in fragments):
            found.append(int(process.info["pid"]))
    return found
