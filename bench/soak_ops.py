"""The soak's workload: the calls it makes, the ledger of every write the
server acknowledged, and the check at the end that each of them is stored.

Each write carries its own ids (message ids, fact keys, request ids), so the
ledger knows exactly what must be there: the messages of every session with
their contents, in one gap-free sequence, and every memory by id.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from bench.sessions import Messages
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc

SESSIONS_PER_USER = 4
HISTORY_WINDOW = 20
SEARCH_LIMIT = 10
# Relative weights of the operations: a chat agent's mix, reads first.
MIX: dict[str, int] = {
    "AppendMessages": 30,
    "GetHistory": 25,
    "CreateMemory": 10,
    "SearchMemories": 10,
    "GetFact": 8,
    "ListMemories": 7,
    "GetMemory": 9,
    "ExtractMemories": 1,
}
_TOPICS = ["travel", "food", "work", "health", "music", "family", "sport", "books"]
_VERIFY_CONCURRENCY = 16


@dataclass
class UserLedger:
    """What the server acknowledged for one user."""

    user_id: str
    # session id -> message id -> content, in acknowledgement order
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    memories: dict[str, str] = field(default_factory=dict)  # memory id -> content
    facts: dict[str, str] = field(default_factory=dict)  # fact key -> memory id


@dataclass
class Verification:
    sessions: int = 0
    messages: int = 0
    memories: int = 0
    missing_messages: int = 0
    unexpected_messages: int = 0
    wrong_content: int = 0
    broken_sequences: int = 0
    missing_memories: int = 0
    # Memories whose content an extraction job changed since (an UPDATE event).
    changed_memories: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Acknowledged writes not stored as acknowledged."""
        return (
            self.missing_messages
            + self.unexpected_messages
            + self.wrong_content
            + self.broken_sequences
            + self.missing_memories
        )

    def note(self, problem: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(problem)


Call = Callable[[], Awaitable[object]]


class Workload:
    """Picks the next call for a random user and records what it wrote."""

    def __init__(self, channel: grpc.aio.Channel, *, users: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._texts = Messages(seed)
        self.sessions = session_grpc.SessionServiceStub(channel)
        self.memories = memory_grpc.MemoryServiceStub(channel)
        run = uuid.uuid4().hex[:6]
        self.users = [UserLedger(f"soak-{run}-{index}") for index in range(users)]
        self._names = list(MIX)
        self._weights = [MIX[name] for name in self._names]
        self._serial = 0

    def next_call(self) -> tuple[str, Call]:
        """The name of an RPC and a coroutine factory that makes it."""
        user = self._rng.choice(self.users)
        name = self._rng.choices(self._names, self._weights)[0]
        # Reads of things not written yet fall back to the write that makes them.
        if name in ("GetHistory", "ExtractMemories") and not user.messages:
            name = "AppendMessages"
        if (name == "GetFact" and not user.facts) or (name == "GetMemory" and not user.memories):
            name = "CreateMemory"
        make: Callable[[UserLedger], Call] = getattr(self, f"_{name}")
        return name, make(user)

    def _unique(self) -> str:
        self._serial += 1
        return f"{self._serial}-{uuid.uuid4().hex[:8]}"

    # -- writes --------------------------------------------------------------

    def _AppendMessages(self, user: UserLedger) -> Call:
        session_id = f"s{self._rng.randrange(SESSIONS_PER_USER)}"
        messages = [
            spb.Message(id=self._unique(), role=m.role, content=m.content)
            for m in self._texts.take(self._rng.randint(1, 3))
        ]
        request = spb.AppendMessagesRequest(
            user_id=user.user_id, session_id=session_id, agent_id="soak", messages=messages
        )

        async def call() -> None:
            await self.sessions.AppendMessages(request)
            acked = user.messages.setdefault(session_id, {})
            for message in messages:
                acked[message.id] = message.content

        return call

    def _CreateMemory(self, user: UserLedger) -> Call:
        serial = self._unique()
        topic = self._rng.choice(_TOPICS)
        if self._rng.random() < 0.3:
            key = f"soak_pref_{serial}"
            memory = mpb.Memory(
                kind=mpb.MEMORY_KIND_FACT, key=key, content=f"prefers option {serial} for {topic}"
            )
        else:
            key = ""
            memory = mpb.Memory(
                kind=mpb.MEMORY_KIND_SEMANTIC,
                content=f"note {serial}: {self._texts.take(1)[0].content}",
                topics=[topic],
            )
        request = mpb.CreateMemoryRequest(
            user_id=user.user_id, memory=memory, request_id=f"soak-{serial}"
        )

        async def call() -> None:
            reply = await self.memories.CreateMemory(request)
            user.memories[reply.memory.id] = memory.content
            if key:
                user.facts[key] = reply.memory.id

        return call

    def _ExtractMemories(self, user: UserLedger) -> Call:
        session_id = self._rng.choice(sorted(user.messages))
        request = mpb.ExtractMemoriesRequest(user_id=user.user_id, session_id=session_id)
        return lambda: self.memories.ExtractMemories(request)

    # -- reads ---------------------------------------------------------------

    def _GetHistory(self, user: UserLedger) -> Call:
        session_id = self._rng.choice(sorted(user.messages))
        request = spb.GetHistoryRequest(
            user_id=user.user_id, session_id=session_id, last_messages=HISTORY_WINDOW
        )
        return lambda: self.sessions.GetHistory(request)

    def _SearchMemories(self, user: UserLedger) -> Call:
        request = mpb.SearchMemoriesRequest(
            user_id=user.user_id, query=self._texts.take(1)[0].content[:80], limit=SEARCH_LIMIT
        )
        return lambda: self.memories.SearchMemories(request)

    def _GetFact(self, user: UserLedger) -> Call:
        key = self._rng.choice(list(user.facts))
        request = mpb.GetFactRequest(user_id=user.user_id, key=key)
        return lambda: self.memories.GetFact(request)

    def _GetMemory(self, user: UserLedger) -> Call:
        memory_id = self._rng.choice(list(user.memories))
        request = mpb.GetMemoryRequest(user_id=user.user_id, id=memory_id)
        return lambda: self.memories.GetMemory(request)

    def _ListMemories(self, user: UserLedger) -> Call:
        request = mpb.ListMemoriesRequest(user_id=user.user_id, page_size=20)
        return lambda: self.memories.ListMemories(request)

    # -- the check at the end ------------------------------------------------

    async def verify(self) -> Verification:
        """Read back every acknowledged write."""
        result = Verification()
        limit = asyncio.Semaphore(_VERIFY_CONCURRENCY)

        async def bounded(check: Awaitable[None]) -> None:
            async with limit:
                await check

        checks = []
        for user in self.users:
            for session_id, acked in user.messages.items():
                checks.append(bounded(self._verify_session(user, session_id, acked, result)))
            for memory_id, content in user.memories.items():
                checks.append(bounded(self._verify_memory(user, memory_id, content, result)))
        await asyncio.gather(*checks)
        return result

    async def _verify_session(
        self, user: UserLedger, session_id: str, acked: dict[str, str], result: Verification
    ) -> None:
        reply = await self.sessions.GetHistory(
            spb.GetHistoryRequest(
                user_id=user.user_id, session_id=session_id, last_messages=len(acked) + 10
            )
        )
        result.sessions += 1
        result.messages += len(acked)
        stored = {m.id: m.content for m in reply.messages}
        where = f"{user.user_id}/{session_id}"
        missing = acked.keys() - stored.keys()
        unexpected = stored.keys() - acked.keys()
        wrong = [i for i in acked.keys() & stored.keys() if stored[i] != acked[i]]
        result.missing_messages += len(missing)
        result.unexpected_messages += len(unexpected)
        result.wrong_content += len(wrong)
        for kind, ids in (("missing", missing), ("unexpected", unexpected), ("changed", wrong)):
            if ids:
                result.note(f"{where}: {len(ids)} {kind} messages, e.g. {sorted(ids)[0]}")
        seqs = [m.seq for m in reply.messages]
        if seqs != list(range(1, len(seqs) + 1)):
            result.broken_sequences += 1
            result.note(f"{where}: seqs are not 1..{len(seqs)}: {seqs[:10]}...")

    async def _verify_memory(
        self, user: UserLedger, memory_id: str, content: str, result: Verification
    ) -> None:
        result.memories += 1
        try:
            reply = await self.memories.GetMemory(
                mpb.GetMemoryRequest(user_id=user.user_id, id=memory_id)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            result.missing_memories += 1
            result.note(f"{user.user_id}: memory {memory_id} is gone")
            return
        if reply.memory.content != content:
            result.changed_memories += 1
