"""Limits over a real gRPC socket on the real stores: request rate per user,
request size, concurrency, the Postgres pool, and call deadlines reaching the
SQL and Redis calls."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as pb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server import deadlines
from server.api.app import start_server
from server.errors import DeadlineExceeded
from server.models import NewMessage, Role
from server.resources import Resources
from server.sessions import SessionService
from server.stores.postgres_pool import DeadlinePool
from server.stores.search_store import HNSW_SESSION_OPTIONS
from tests.integration.test_session_api import expect_error

if TYPE_CHECKING:
    SessionStub = session_grpc.SessionServiceAsyncStub
    MemoryStub = memory_grpc.MemoryServiceAsyncStub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def own_server(resources: Resources, **overrides: Any) -> AsyncIterator[grpc.aio.Channel]:
    """A server of its own with these settings, on the shared stores."""
    settings = resources.settings.model_copy(update=overrides)
    own = dataclasses.replace(resources, settings=settings)
    running = await start_server(settings, own)
    await running.health.check_once()
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            yield channel
    finally:
        await running.stop(grace=1.0)


def history(user_id: str) -> pb.GetHistoryRequest:
    return pb.GetHistoryRequest(user_id=user_id, session_id="s")


def append(user_id: str, content: str = "hi", **fields: Any) -> pb.AppendMessagesRequest:
    return pb.AppendMessagesRequest(
        user_id=user_id,
        session_id="s",
        messages=[pb.Message(role="user", content=content)],
        **fields,
    )


# -- request rate ---------------------------------------------------------------


async def test_a_user_over_the_rate_gets_resource_exhausted_with_retry_info(
    resources: Resources, user_id: str
) -> None:
    async with own_server(resources, rate_limit=0.5, rate_limit_burst=3) as channel:
        stub = session_grpc.SessionServiceStub(channel)
        for _ in range(3):
            await stub.GetHistory(history(user_id))
        error = await expect_error(
            stub.GetHistory(history(user_id)), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info) and info.reason == "RATE_LIMITED"
        assert status.details[1].Unpack(retry)
        assert 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 2
        assert "rate limit" in (error.details() or "")
        # Another user, and health probes, are not affected.
        await stub.GetHistory(history(f"{user_id}-other"))
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(5):
            await health.Check(health_pb2.HealthCheckRequest())


async def test_there_is_no_rate_limit_by_default(session_stub: SessionStub, user_id: str) -> None:
    await asyncio.gather(*(session_stub.GetHistory(history(user_id)) for _ in range(100)))


# -- request size ---------------------------------------------------------------


def big_metadata(size: int) -> struct_pb2.Struct:
    metadata = struct_pb2.Struct()
    metadata.update({"blob": "x" * size})
    return metadata


def memory_request(**fields: Any) -> mpb.CreateMemoryRequest:
    memory = mpb.Memory(kind=mpb.MEMORY_KIND_SEMANTIC, content="a fact")
    for name, value in fields.items():
        if isinstance(value, list):
            getattr(memory, name).extend(value)
        elif isinstance(value, struct_pb2.Struct):
            getattr(memory, name).CopyFrom(value)
        else:
            setattr(memory, name, value)
    return mpb.CreateMemoryRequest(user_id="u", memory=memory)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (memory_request(metadata=big_metadata(20_000)), "memory.metadata"),
        (memory_request(content="a\x00b"), "memory.content"),
        (memory_request(source_message_ids=["m"] * 101), "memory.source_message_ids"),
        (memory_request(topics=["t"] * 33), "memory.topics"),
        (mpb.ListMemoriesRequest(user_id="u", page_token="x" * 5000), "page_token"),
        (
            mpb.ListMemoriesRequest(
                user_id="u", filters=mpb.MemoryFilters(kinds=[mpb.MEMORY_KIND_FACT] * 3)
            ),
            "filters.kinds",
        ),
        (mpb.SearchMemoriesRequest(user_id="u", query="a\x00"), "query"),
        (mpb.DeleteMemoryRequest(user_id="u", id="0" * 10_000), "id"),
        (
            mpb.DeleteMemoryRequest(
                user_id="u", id="00000000-0000-0000-0000-000000000000", reason="r" * 2000
            ),
            "reason",
        ),
        (mpb.GetJobRequest(user_id="u", id="j" * 10_000), "id"),
    ],
)
async def test_oversize_and_unstorable_memory_fields_are_invalid_argument(
    channel: grpc.aio.Channel, request_: Any, field: str
) -> None:
    stub = memory_grpc.MemoryServiceStub(channel)
    method: Any = {
        mpb.CreateMemoryRequest: stub.CreateMemory,
        mpb.ListMemoriesRequest: stub.ListMemories,
        mpb.SearchMemoriesRequest: stub.SearchMemories,
        mpb.DeleteMemoryRequest: stub.DeleteMemory,
        mpb.GetJobRequest: stub.GetJob,
    }[type(request_)]
    error = await expect_error(method(request_), grpc.StatusCode.INVALID_ARGUMENT, field)
    assert len(error.details() or "") < 500  # nothing of the input echoed in full


async def test_unknown_update_mask_paths_are_named_briefly(channel: grpc.aio.Channel) -> None:
    stub = memory_grpc.MemoryServiceStub(channel)
    error = await expect_error(
        stub.UpdateMemory(
            mpb.UpdateMemoryRequest(
                user_id="u",
                memory=mpb.Memory(id="00000000-0000-0000-0000-000000000000"),
                update_mask=field_mask_pb2.FieldMask(paths=[f"junk{i}" * 100 for i in range(50)]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask",
    )
    assert "45 more" in (error.details() or "") and len(error.details() or "") < 1000


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (pb.Message(role="user", content="a\x00b"), "messages[0].content"),
        (
            pb.Message(role="user", content="x", metadata=big_metadata(20_000)),
            "messages[0].metadata",
        ),
        (pb.Message(role="r" * 100_000, content="x"), "messages[0].role"),
    ],
)
async def test_oversize_and_unstorable_message_fields_are_invalid_argument(
    session_stub: SessionStub, user_id: str, message: pb.Message, field: str
) -> None:
    request = pb.AppendMessagesRequest(user_id=user_id, session_id="s", messages=[message])
    error = await expect_error(
        session_stub.AppendMessages(request), grpc.StatusCode.INVALID_ARGUMENT, field
    )
    assert len(error.details() or "") < 500


async def test_many_clashing_message_ids_are_already_exists_named_briefly(
    session_stub: SessionStub, user_id: str
) -> None:
    messages = [pb.Message(role="user", content="x", id=f"{i:0>120}") for i in range(200)]
    request = pb.AppendMessagesRequest(user_id=user_id, session_id="s", messages=messages)
    await session_stub.AppendMessages(request)
    error = await expect_error(session_stub.AppendMessages(request), grpc.StatusCode.ALREADY_EXISTS)
    assert "195 more" in (error.details() or "")


async def test_metadata_numbers_that_are_not_json_are_invalid_argument(
    session_stub: SessionStub, user_id: str
) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"score": float("nan")})
    message = pb.Message(role="user", content="x", metadata=metadata)
    await expect_error(
        session_stub.AppendMessages(
            pb.AppendMessagesRequest(user_id=user_id, session_id="s", messages=[message])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "messages[0].metadata",
    )


async def test_a_request_over_the_size_limit_is_refused_unparsed(
    resources: Resources, user_id: str
) -> None:
    async with own_server(resources, max_request_bytes=64 * 1024) as channel:
        stub = session_grpc.SessionServiceStub(channel)
        await expect_error(
            stub.AppendMessages(append(user_id, "x" * 60_000, agent_id="a" * 10_000)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        await stub.AppendMessages(append(user_id, "x" * 60_000))
        reply = await stub.GetHistory(history(user_id))
        assert len(reply.messages) == 1


async def test_bytes_that_do_not_parse_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary(
        "/memoryd.v1.SessionService/AppendMessages",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    # Field 1 (user_id) as a string with invalid UTF-8, then a truncated field.
    await expect_error(call(b"\x0a\x02\xff\xfe\x12\x05ab"), grpc.StatusCode.INVALID_ARGUMENT)
    # Metadata nested past protobuf's depth limit (which protobuf will not
    # even build, so the bytes are written by hand).
    message = b"\x0a\x04user" + _field(3, b"x") + _field(7, _nested_struct(40))
    request = b"\x0a\x01u" + b"\x12\x01s" + _field(4, message)
    await expect_error(call(request), grpc.StatusCode.INVALID_ARGUMENT, "request")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_struct(depth: int) -> bytes:
    """google.protobuf.Struct {"n": {"n": ... {}}}, `depth` levels deep."""
    struct = b""
    for _ in range(depth):
        value = _field(5, struct)  # Value.struct_value
        entry = _field(1, b"n") + _field(2, value)  # map entry: key, value
        struct = _field(1, entry)  # Struct.fields
    return struct


# -- concurrency and the pool ---------------------------------------------------


@contextlib.asynccontextmanager
async def locked_session(resources: Resources, user_id: str) -> AsyncIterator[None]:
    """Hold the row lock of the user's session "s" (as a concurrent append
    would), so that appends to it wait in Postgres until the block ends."""
    assert resources.settings.postgres_url is not None
    async with await psycopg.AsyncConnection.connect(resources.settings.postgres_url) as conn:
        await conn.execute(
            "SELECT 1 FROM sessions WHERE user_id = %s AND session_id = 's' FOR UPDATE",
            (user_id,),
        )
        yield
        await conn.rollback()


async def lock_waiters(resources: Resources) -> int:
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE '%%INSERT INTO sessions%%'"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def until(predicate: Any) -> None:
    async with asyncio.timeout(30):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.02)


async def test_calls_beyond_max_concurrent_rpcs_are_resource_exhausted(
    resources: Resources, user_id: str
) -> None:
    async with own_server(resources, max_concurrent_rpcs=2) as channel:
        stub = session_grpc.SessionServiceStub(channel)
        await stub.AppendMessages(append(user_id))
        async with locked_session(resources, user_id):
            stalled = [asyncio.ensure_future(stub.AppendMessages(append(user_id))) for _ in "ab"]

            async def both_waiting() -> bool:
                return await lock_waiters(resources) >= 2

            await until(both_waiting)
            await expect_error(
                stub.GetHistory(history(user_id)), grpc.StatusCode.RESOURCE_EXHAUSTED
            )
        replies = await asyncio.gather(*stalled)
        assert sorted(r.session.message_count for r in replies) == [2, 3]
        await stub.GetHistory(history(user_id))


async def test_a_call_waiting_too_long_for_a_pool_connection_is_unavailable(
    resources: Resources, user_id: str
) -> None:
    settings = resources.settings
    assert settings.postgres_url is not None
    pool = DeadlinePool(
        settings.postgres_url,
        statement_timeout_ms=5000,
        min_size=1,
        max_size=1,
        timeout=0.5,
        kwargs={"options": f"-c statement_timeout=5000 {HNSW_SESSION_OPTIONS}"},
        open=False,
    )
    await pool.open(wait=True)
    own = dataclasses.replace(resources, postgres=pool)
    running = await start_server(settings, own)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = session_grpc.SessionServiceStub(channel)
            async with pool.connection():  # the pool's only connection
                await expect_error(
                    stub.AppendMessages(append(user_id)), grpc.StatusCode.UNAVAILABLE
                )
            await stub.AppendMessages(append(user_id))
    finally:
        await running.stop(grace=1.0)
        await pool.close()


# -- deadlines ------------------------------------------------------------------


async def test_a_deadline_passing_mid_append_is_deadline_exceeded_and_writes_nothing(
    session_stub: SessionStub, resources: Resources, user_id: str
) -> None:
    await session_stub.AppendMessages(append(user_id, "kept"))
    async with locked_session(resources, user_id):
        await expect_error(
            session_stub.AppendMessages(append(user_id, "lost"), timeout=0.5),
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )

        async def none_waiting() -> bool:
            return await lock_waiters(resources) == 0

        # The statement was cancelled in Postgres, not left waiting for the lock.
        await until(none_waiting)
    reply = await session_stub.GetHistory(history(user_id))
    assert [m.content for m in reply.messages] == ["kept"]
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute(
            "SELECT message_count FROM sessions WHERE user_id = %s", (user_id,)
        )
        assert await cursor.fetchall() == [(1,)]


async def test_the_deadline_bounds_the_sql_statement_itself(
    sessions: SessionService, resources: Resources, user_id: str
) -> None:
    """Without the gRPC layer: the deadline alone (well under the 5 s store
    timeout) stops the statement waiting for the lock, as DeadlineExceeded."""
    message = NewMessage(role=Role.USER, content="x")
    await sessions.append(
        user_id=user_id, session_id="s", agent_id="", messages=[message], ttl=None
    )

    async def append_with_deadline() -> None:
        deadlines.set_from_remaining(0.3)
        await sessions.append(
            user_id=user_id, session_id="s", agent_id="", messages=[message], ttl=None
        )

    async with locked_session(resources, user_id):
        with pytest.raises(DeadlineExceeded):
            await asyncio.create_task(append_with_deadline())
    # The pool's connections are back to the store timeout for calls without one.
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute("SHOW statement_timeout")
        assert await cursor.fetchone() == ("5s",)


async def test_the_deadline_bounds_redis_calls_without_dropping_the_connection(
    resources: Resources,
) -> None:
    mux = resources.redis_mux

    async def blocked_pop() -> None:
        deadlines.set_from_remaining(0.2)
        await mux.execute("BLPOP", "memoryd-test:never", 1)

    with pytest.raises(DeadlineExceeded):
        await asyncio.create_task(blocked_pop())
    assert await mux.execute("PING") == b"PONG"
