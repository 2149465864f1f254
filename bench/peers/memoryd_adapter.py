"""memoryd: the embedded stack (Postgres+pgvector, Valkey), a `memoryd serve`
process and a `memoryd worker` (bench/stack.py), driven over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from bench.peers.adapter import Hit, Item, PeerAdapter, Turn, pids_with_cmdline
from bench.stack import ServerProcess, running_server
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc

_BATCH = 100  # BatchCreateMemories' size for bulk loads
_DEADLINE_S = 60.0
# Loading the model in the server and the worker takes minutes on a loaded machine.
_SERVING_TIMEOUT_S = 900.0
_CHANNELS = 4  # 64 callers on one HTTP/2 connection would measure the client's channel


class MemorydAdapter(PeerAdapter):
    name = "memoryd"
    notes = (
        "gRPC; hybrid search (vector + full text); embeddings by `memoryd worker` "
        "(onnx backend); write->searchable waits for semantic search to find it"
    )

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._root: Path | None = None
        self._server: ServerProcess | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._memories: list[memory_grpc.MemoryServiceAsyncStub] = []
        self._sessions: list[session_grpc.SessionServiceAsyncStub] = []
        self._next = 0

    @property
    def server(self) -> ServerProcess:
        if self._server is None:
            raise RuntimeError("memoryd is not started")
        return self._server

    async def start(self) -> None:
        # pgserver runs Postgres as another user, which must traverse the data dir.
        self._root = Path(tempfile.mkdtemp(prefix="memoryd-peers-"))
        self._root.chmod(0o755)
        self._stack.callback(shutil.rmtree, self._root, True)
        # running_server calls asyncio.run (migrations): keep it off this loop.
        self._server = await asyncio.to_thread(
            self._stack.enter_context,
            running_server(
                data_dir=self._root / "data", worker=True, serving_timeout_s=_SERVING_TIMEOUT_S
            ),
        )
        self._channels = [
            grpc.aio.insecure_channel(
                self._server.address, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(_CHANNELS)
        ]
        self._memories = [memory_grpc.MemoryServiceStub(c) for c in self._channels]
        self._sessions = [session_grpc.SessionServiceStub(c) for c in self._channels]

    async def stop(self) -> None:
        for channel in self._channels:
            await channel.close(None)
        self._channels = []
        await asyncio.to_thread(self._stack.close)

    def _memory(self) -> memory_grpc.MemoryServiceAsyncStub:
        self._next += 1
        return self._memories[self._next % len(self._memories)]

    @staticmethod
    def _request(item: Item) -> mpb.CreateMemoryRequest:
        return mpb.CreateMemoryRequest(
            memory=mpb.Memory(
                kind=mpb.MEMORY_KIND_SEMANTIC,
                content=item.text,
                source_message_ids=[item.source_id],
            )
        )

    async def add_memory(self, user_id: str, item: Item) -> None:
        request = self._request(item)
        request.user_id = user_id
        await self._memory().CreateMemory(request, timeout=_DEADLINE_S)

    async def add_memories(self, user_id: str, items: Sequence[Item]) -> None:
        for start in range(0, len(items), _BATCH):
            await self._memory().BatchCreateMemories(
                mpb.BatchCreateMemoriesRequest(
                    user_id=user_id,
                    requests=[self._request(item) for item in items[start : start + _BATCH]],
                ),
                timeout=_DEADLINE_S,
            )

    async def _search(self, user_id: str, query: str, k: int, mode: mpb.SearchMode) -> list[Hit]:
        reply = await self._memory().SearchMemories(
            mpb.SearchMemoriesRequest(user_id=user_id, query=query, limit=k, mode=mode),
            timeout=_DEADLINE_S,
        )
        return [
            Hit(
                r.memory.source_message_ids[0] if r.memory.source_message_ids else "",
                r.memory.content,
            )
            for r in reply.results
        ]

    async def search(self, user_id: str, query: str, k: int) -> list[Hit]:
        return await self._search(user_id, query, k, mpb.SEARCH_MODE_HYBRID)

    async def search_by_meaning(self, user_id: str, query: str, k: int) -> list[Hit]:
        # Hybrid search finds a new memory by its words before it is embedded.
        return await self._search(user_id, query, k, mpb.SEARCH_MODE_SEMANTIC)

    async def append_session(self, user_id: str, session_id: str, turns: Sequence[Turn]) -> None:
        for start in range(0, len(turns), 50):
            await self._sessions[0].AppendMessages(
                spb.AppendMessagesRequest(
                    user_id=user_id,
                    session_id=session_id,
                    agent_id="bench-peers",
                    messages=[
                        spb.Message(role=t.role, content=t.content)
                        for t in turns[start : start + 50]
                    ],
                ),
                timeout=_DEADLINE_S,
            )

    async def history(self, user_id: str, session_id: str, last: int) -> list[Turn]:
        self._next += 1
        reply = await self._sessions[self._next % len(self._sessions)].GetHistory(
            spb.GetHistoryRequest(user_id=user_id, session_id=session_id, last_messages=last),
            timeout=_DEADLINE_S,
        )
        return [Turn(m.role, m.content) for m in reply.messages]

    async def delete_user(self, user_id: str) -> None:
        await self._memory().DeleteUserMemories(
            mpb.DeleteUserMemoriesRequest(user_id=user_id), timeout=_DEADLINE_S
        )
        await self._sessions[0].DeleteUserSessions(
            spb.DeleteUserSessionsRequest(user_id=user_id), timeout=_DEADLINE_S
        )

    def pids(self) -> list[int]:
        server = self.server
        pids = [server.pid] + ([server.worker_pid] if server.worker_pid else [])
        if server.embedded_stores and self._root is not None:
            pids += pids_with_cmdline("postgres", str(self._root / "data" / "postgres"))
            port = urlsplit(server.redis_url).port
            pids += pids_with_cmdline("valkey-server", f":{port}")
        return pids
