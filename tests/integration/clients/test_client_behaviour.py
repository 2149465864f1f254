"""What both clients promise beyond the calls: typed errors naming the field,
retries on UNAVAILABLE, deadlines, the bearer token, extraction jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from memoryd.client import (
    NO_RETRY,
    AlreadyExists,
    AsyncMemoryClient,
    DeadlineExceeded,
    InvalidArgument,
    MemorydError,
    NotFound,
    RetryPolicy,
    Unavailable,
    Unimplemented,
)
from memoryd.v1 import memory_service_pb2 as mpb
from server.api.app import RunningServer, start_server
from server.resources import Resources
from server.settings import Settings
from tests.support.processes import free_port

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


class MetadataRecorder(_Interceptor):
    """Records the metadata of every call the server receives."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        metadata = handler_call_details.invocation_metadata or ()
        self.seen.append({str(key): str(value) for key, value in metadata})
        return await continuation(handler_call_details)


@contextlib.asynccontextmanager
async def extra_server(
    settings: Settings, resources: Resources, *, listen: str, interceptors: list[_Interceptor]
) -> AsyncIterator[RunningServer]:
    running = await start_server(
        settings.model_copy(update={"listen": listen}), resources, interceptors=interceptors
    )
    try:
        yield running
    finally:
        await running.stop(grace=0.5)


async def test_errors_are_typed_and_name_the_field(client: AsyncMemoryClient, user_id: str) -> None:
    with pytest.raises(InvalidArgument) as missing_user:
        await client.sessions.history("", "s")
    error = missing_user.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.field == "user_id" and error.reason == "INVALID_ARGUMENT"
    assert "user_id" in error.message and error.request_id
    assert isinstance(error, MemorydError)

    with pytest.raises(InvalidArgument) as empty_content:
        await client.memories.add(user_id, "  ")
    assert empty_content.value.field == "memory.content"
    with pytest.raises(InvalidArgument) as bad_id:
        await client.memories.get(user_id, "not-a-uuid")
    assert bad_id.value.field == "id"
    with pytest.raises(NotFound) as no_fact:
        await client.memories.get_fact(user_id, "nickname")
    assert no_fact.value.code == grpc.StatusCode.NOT_FOUND and no_fact.value.field is None

    await client.sessions.append(user_id, "s", [{"role": "user", "content": "a", "id": "m1"}])
    with pytest.raises(AlreadyExists):
        await client.sessions.append(user_id, "s", [{"role": "user", "content": "b", "id": "m1"}])
    with pytest.raises(InvalidArgument) as bad_role:
        await client.sessions.append(user_id, "s", [{"role": "robot", "content": "c"}])
    assert bad_role.value.field == "messages[0].role"


async def test_bearer_token_is_sent_as_authorization_metadata(
    settings: Settings, resources: Resources, indexing: None, user_id: str
) -> None:
    recorder = MetadataRecorder()
    async with (
        extra_server(settings, resources, listen="127.0.0.1:0", interceptors=[recorder]) as srv,
        AsyncMemoryClient(srv.address, token="s3cret") as client,
    ):
        await client.memories.add(user_id, "Prefers tea")
    assert recorder.seen[-1]["authorization"] == "Bearer s3cret"


async def test_a_call_made_before_the_server_is_up_succeeds_once_it_is(
    settings: Settings, resources: Resources, indexing: None, user_id: str
) -> None:
    port = free_port()
    retry = RetryPolicy(max_attempts=100, initial_backoff=0.05, max_backoff=0.2)
    async with AsyncMemoryClient(f"127.0.0.1:{port}", retry=retry, timeout=60) as client:
        call = asyncio.create_task(
            client.sessions.append(user_id, "early", [{"role": "user", "content": "hi"}])
        )
        await asyncio.sleep(0.5)
        assert not call.done()  # without retries it would have failed UNAVAILABLE by now
        async with extra_server(
            settings, resources, listen=f"127.0.0.1:{port}", interceptors=[]
        ) as srv:
            stored = await call
            assert [m.content for m in stored] == ["hi"]
            # The same client rides a server restart on the same port.
            await srv.stop(grace=0.5)
        restart = extra_server(settings, resources, listen=f"127.0.0.1:{port}", interceptors=[])
        again = asyncio.create_task(client.sessions.history(user_id, "early"))
        async with restart:
            assert [m.content for m in await again] == ["hi"]


async def test_unavailable_is_raised_when_retries_run_out(indexing: None, user_id: str) -> None:
    port = free_port()  # nothing listens there
    async with AsyncMemoryClient(f"127.0.0.1:{port}", retry=NO_RETRY) as client:
        with pytest.raises(Unavailable) as caught:
            await client.sessions.history(user_id, "s")
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    async with AsyncMemoryClient(f"127.0.0.1:{port}", retry=retry) as client:
        with pytest.raises(Unavailable):
            await client.memories.get_fact(user_id, "k")


async def test_deadlines_default_and_per_call(user_id: str) -> None:
    """A peer that accepts connections and never answers: only a deadline ends a call."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # until the client hangs up
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        async with AsyncMemoryClient(f"127.0.0.1:{port}", timeout=0.3) as client:
            with pytest.raises(DeadlineExceeded) as caught:
                await client.sessions.history(user_id, "s")
            assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # No default deadline at all: only the per-call one can end this call.
        async with AsyncMemoryClient(f"127.0.0.1:{port}", timeout=None) as client:
            with pytest.raises(DeadlineExceeded):
                await client.memories.search("x", user_id=user_id, timeout=0.3)


async def test_extract_runs_a_job_to_completion(client: AsyncMemoryClient, user_id: str) -> None:
    await client.sessions.append(
        user_id, "chat", [{"role": "user", "content": "I am vegetarian and live in Oslo"}]
    )
    try:
        job = await client.memories.extract(user_id, session_id="chat", timeout=60)
    except Unimplemented:
        pytest.skip("this server does not implement ExtractMemories yet")
    assert job.state == mpb.JOB_STATE_SUCCEEDED, job.error
    assert job.created_count >= 1
    memories = await client.memories.get_user_memories(user_id)
    assert len(memories) >= job.created_count
    with pytest.raises(ValueError, match="exactly one"):
        await client.memories.extract(user_id)
