"""AsyncMemoryClient: the asyncio client (grpc.aio)."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import grpc

from memoryd.client import _requests as build
from memoryd.client._channel import ChannelConfig, RetryPolicy, channel_config, open_aio_channel
from memoryd.client.convert import Kind, MessageLike, Mode, Seconds
from memoryd.client.errors import DeadlineExceeded, from_rpc_error
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as mgrpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as sgrpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _AsyncCaller:
    """Makes one unary call with the client's metadata, deadline and retries."""

    def __init__(self, config: ChannelConfig) -> None:
        self._config = config

    async def __call__(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout: float | None = None,
    ) -> Resp:
        budget = timeout if timeout is not None else self._config.timeout
        deadline = None if budget is None else time.monotonic() + budget
        delays = self._config.retry.delays()
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"no time left for a retry within {budget} s")
            try:
                return await rpc(request, timeout=remaining, metadata=self._config.metadata)
            except grpc.RpcError as error:
                code = error.code()
                delay = next(delays, None) if code == grpc.StatusCode.UNAVAILABLE else None
                if delay is None or (deadline is not None and time.monotonic() + delay > deadline):
                    raise from_rpc_error(error) from error
            await asyncio.sleep(delay)


class AsyncSessions:
    """Session memory: the running transcript of each conversation."""

    def __init__(self, call: _AsyncCaller, channel: grpc.aio.Channel) -> None:
        self._call = call
        self._stub = sgrpc.SessionServiceStub(channel)

    async def append(
        self,
        user_id: str,
        session_id: str,
        messages: Iterable[MessageLike],
        *,
        agent_id: str | None = None,
        ttl: Seconds | None = None,
        timeout: float | None = None,
    ) -> builtins.list[spb.Message]:
        """Append messages (dicts or Messages); returns them as stored, with id and seq."""
        request = build.append(user_id, session_id, messages, agent_id=agent_id, ttl=ttl)
        return list((await self._call(self._stub.AppendMessages, request, timeout)).messages)

    async def history(
        self,
        user_id: str,
        session_id: str,
        *,
        last_messages: int | None = None,
        last_runs: int | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
    ) -> builtins.list[spb.Message]:
        """The session's messages, oldest first (by default the last 20)."""
        request = build.history(
            user_id,
            session_id,
            last_messages=last_messages,
            last_runs=last_runs,
            max_tokens=max_tokens,
        )
        return list((await self._call(self._stub.GetHistory, request, timeout)).messages)

    async def list(
        self, user_id: str, *, agent_id: str | None = None, timeout: float | None = None
    ) -> builtins.list[spb.Session]:
        """All the user's sessions, most recently updated first (pages followed)."""
        request = spb.ListSessionsRequest(
            user_id=user_id, agent_id=agent_id or "", page_size=build.PAGE_SIZE
        )
        sessions: builtins.list[spb.Session] = []
        while True:
            reply = await self._call(self._stub.ListSessions, request, timeout)
            sessions.extend(reply.sessions)
            if not reply.next_page_token:
                return sessions
            request.page_token = reply.next_page_token

    async def delete(self, user_id: str, session_id: str, *, timeout: float | None = None) -> None:
        """Delete one session; NotFound if the user has no such session."""
        request = spb.DeleteSessionRequest(user_id=user_id, session_id=session_id)
        await self._call(self._stub.DeleteSession, request, timeout)

    async def clear(self, user_id: str, *, timeout: float | None = None) -> int:
        """Delete every session of the user; returns how many."""
        request = spb.DeleteUserSessionsRequest(user_id=user_id)
        return (await self._call(self._stub.DeleteUserSessions, request, timeout)).deleted_count

    async def clear_before(
        self,
        cutoff: datetime | timedelta,
        user_id: str | None = None,
        *,
        all_users: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Delete the sessions last updated before `cutoff` (a time, or an age as
        a timedelta): the user's, or every user's with all_users=True."""
        request = build.clear_before(cutoff, user_id=user_id, all_users=all_users)
        return (await self._call(self._stub.DeleteSessionsBefore, request, timeout)).deleted_count


class AsyncMemories:
    """Long-term memory: facts (by key) and semantic memories (by search)."""

    def __init__(self, call: _AsyncCaller, channel: grpc.aio.Channel) -> None:
        self._call = call
        self._stub = mgrpc.MemoryServiceStub(channel)

    async def add(
        self,
        user_id: str,
        content: str,
        *,
        kind: Kind | None = None,
        key: str | None = None,
        topics: Sequence[str] | None = None,
        ttl: Seconds | None = None,
        metadata: Mapping[str, Any] | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        source_message_ids: Sequence[str] | None = None,
        expire_time: datetime | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> mpb.Memory:
        """Store a memory: a fact when `key` is given, else semantic (or as `kind`
        says). A fact with an existing key replaces that fact's value."""
        request = build.create(
            user_id,
            content,
            kind=kind,
            key=key,
            topics=topics,
            ttl=ttl,
            metadata=metadata,
            agent_id=agent_id,
            session_id=session_id,
            source_message_ids=source_message_ids,
            expire_time=expire_time,
            request_id=request_id,
        )
        return (await self._call(self._stub.CreateMemory, request, timeout)).memory

    async def search(
        self,
        query: str,
        *,
        user_id: str,
        limit: int | None = None,
        wait_for_index: bool = False,
        mode: Mode | None = None,
        kinds: Sequence[Kind] | None = None,
        topics: Sequence[str] | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        min_score: float | None = None,
        recency_weight: float | None = None,
        timeout: float | None = None,
    ) -> list[mpb.SearchResult]:
        """The user's memories best matching `query`, best first (.memory, .score)."""
        request = build.search(
            query,
            user_id=user_id,
            limit=limit,
            wait_for_index=wait_for_index,
            mode=mode,
            kinds=kinds,
            topics=topics,
            agent_id=agent_id,
            session_id=session_id,
            created_after=created_after,
            created_before=created_before,
            min_score=min_score,
            recency_weight=recency_weight,
        )
        return list((await self._call(self._stub.SearchMemories, request, timeout)).results)

    async def get_user_memories(
        self,
        user_id: str,
        *,
        kinds: Sequence[Kind] | None = None,
        topics: Sequence[str] | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        timeout: float | None = None,
    ) -> list[mpb.Memory]:
        """All the user's memories matching the filters, newest first (pages followed)."""
        request = build.list_memories(
            user_id,
            kinds=kinds,
            topics=topics,
            agent_id=agent_id,
            session_id=session_id,
            created_after=created_after,
            created_before=created_before,
        )
        memories: list[mpb.Memory] = []
        while True:
            reply = await self._call(self._stub.ListMemories, request, timeout)
            memories.extend(reply.memories)
            if not reply.next_page_token:
                return memories
            request.page_token = reply.next_page_token

    async def get(self, user_id: str, id: str, *, timeout: float | None = None) -> mpb.Memory:
        request = mpb.GetMemoryRequest(user_id=user_id, id=id)
        return (await self._call(self._stub.GetMemory, request, timeout)).memory

    async def get_fact(self, user_id: str, key: str, *, timeout: float | None = None) -> mpb.Memory:
        """The user's current fact under `key`; NotFound if there is none."""
        request = mpb.GetFactRequest(user_id=user_id, key=key)
        return (await self._call(self._stub.GetFact, request, timeout)).memory

    async def update(
        self,
        user_id: str,
        id: str,
        *,
        content: str | None = None,
        key: str | None = None,
        topics: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: Seconds | None = None,
        expire_time: datetime | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        source_message_ids: Sequence[str] | None = None,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> mpb.Memory:
        """Change the fields given (and only those); returns the updated memory."""
        request = build.update(
            user_id,
            id,
            reason=reason,
            ttl=ttl,
            content=content,
            key=key,
            topics=topics,
            metadata=metadata,
            expire_time=expire_time,
            agent_id=agent_id,
            session_id=session_id,
            source_message_ids=source_message_ids,
        )
        return (await self._call(self._stub.UpdateMemory, request, timeout)).memory

    async def delete(
        self, user_id: str, id: str, *, reason: str | None = None, timeout: float | None = None
    ) -> None:
        """Delete one memory (its history is kept); NotFound if there is none."""
        request = mpb.DeleteMemoryRequest(user_id=user_id, id=id, reason=reason or "")
        await self._call(self._stub.DeleteMemory, request, timeout)

    async def clear(self, user_id: str, *, timeout: float | None = None) -> int:
        """Delete every memory of the user; returns how many."""
        request = mpb.DeleteUserMemoriesRequest(user_id=user_id)
        return (await self._call(self._stub.DeleteUserMemories, request, timeout)).deleted_count

    async def history(
        self, user_id: str, id: str, *, timeout: float | None = None
    ) -> list[mpb.MemoryEvent]:
        """Every add, update and delete of one memory, oldest first."""
        request = mpb.GetMemoryHistoryRequest(user_id=user_id, id=id)
        return list((await self._call(self._stub.GetMemoryHistory, request, timeout)).events)

    async def extract(
        self,
        user_id: str,
        session_id: str | None = None,
        messages: Iterable[MessageLike] | None = None,
        *,
        wait: bool = True,
        timeout: float = 120.0,
    ) -> mpb.Job:
        """Start extracting memories from a session (or from `messages`); with
        wait=True, poll the job until it succeeds or fails, for up to `timeout`
        seconds (then DeadlineExceeded). Returns the job: check `.state`."""
        request = build.extract(user_id, session_id=session_id, messages=messages)
        job = (await self._call(self._stub.ExtractMemories, request)).job
        deadline = time.monotonic() + timeout
        for delay in build.poll_delays():
            if not wait or job.state in build.JOB_DONE:
                return job
            if time.monotonic() + delay > deadline:
                raise DeadlineExceeded(f"extraction job {job.id} not done after {timeout} s")
            await asyncio.sleep(delay)
            poll = mpb.GetJobRequest(user_id=user_id, id=job.id)
            job = (await self._call(self._stub.GetJob, poll)).job
        raise AssertionError("unreachable")  # poll_delays never ends


class AsyncMemoryClient:
    """Asyncio memoryd client; use as an async context manager or await close().

    >>> async with AsyncMemoryClient("localhost:50051") as c:
    ...     await c.memories.add("alice", "Alice is vegetarian", topics=["diet"])
    """

    def __init__(
        self,
        address: str = "localhost:50051",
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """`address` is host:port or unix:/path. `token` is sent as a bearer
        token. TLS is on with tls=True, any of the PEM arguments, or explicit
        `credentials`. `timeout` is each call's default deadline in seconds
        (None: none), retries included; `retry` governs retries on UNAVAILABLE."""
        self.config = channel_config(
            address,
            token=token,
            tls=tls,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            credentials=credentials,
            timeout=timeout,
            retry=retry,
            options=options,
        )
        self.channel = open_aio_channel(self.config)
        call = _AsyncCaller(self.config)
        self.sessions = AsyncSessions(call, self.channel)
        self.memories = AsyncMemories(call, self.channel)

    async def close(self) -> None:
        await self.channel.close(grace=None)

    async def __aenter__(self) -> AsyncMemoryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
