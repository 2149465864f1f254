"""Every request field of SessionService and MemoryService, fuzzed with
hypothesis over a real socket against a real server on the real stores.

For every call: the status is OK or one a client can act on (never INTERNAL
or UNKNOWN), the server logs no error, still answers Health, and a failed
call wrote nothing (the user's rows are counted before and after). Runs are
derandomized, so CI runs the same examples every time; FUZZ_EXAMPLES raises
the examples per method for a longer local run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import pytest
from arq.connections import ArqRedis
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import ConnectionPool, Redis

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from server.api.app import start_server
from server.job_queue import QUEUE_NAME
from server.memories import DELETE_ALL_CONFIRMATION
from server.resources import Resources
from server.stores.redis_mux import MultiplexedRedis
from tests.support.proto_strategies import requests, strings, variants

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    # Hypothesis warns when it prints a failing example of megabytes.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

T = TypeVar("T")
FUZZ_REDIS_DB = 10
USERS = ["fuzz-a", "fuzz-b", "fuzz-known"]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)

# A client can act on these; INTERNAL, UNKNOWN (and UNAVAILABLE with the
# stores up) would be memoryd's fault.
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # SearchMemories' wait_for_index, by design
}

SERVICES = [
    spb.DESCRIPTOR.services_by_name["SessionService"],
    mpb.DESCRIPTOR.services_by_name["MemoryService"],
]
METHODS = [method for service in SERVICES for method in service.methods]

# Realistic values beside the fuzzed ones, so that calls also pass validation
# and reach Postgres and Redis.
OVERRIDES = {
    "user_id": st.sampled_from(USERS),
    "session_id": st.sampled_from(["s1", "s2"]),
    "agent_id": st.sampled_from(["", "agent"]),
    "role": st.sampled_from(["user", "assistant", "tool"]),
    "content": st.sampled_from(["Alice likes green tea", "Bob moved to Lisbon"]),
    "query": st.sampled_from(["tea", "where does Bob live"]),
    "key": st.sampled_from(["city", "drink"]),
    "id": st.uuids().map(str),
    "topics": st.sampled_from(["food", "travel"]),
    "confirm": strings().filter(lambda value: value != DELETE_ALL_CONFIRMATION),
}


def request_strategy(method: MethodDescriptor) -> st.SearchStrategy[Any]:
    """Requests with every field drawn at random."""
    return requests(method.input_type, OVERRIDES).map(_made_safe)


# The memory that UpdateMemory, GetMemory and GetMemoryHistory name (created
# by the fuzz_channel fixture for user KNOWN_USER).
KNOWN_USER = "fuzz-known"
KNOWN_MEMORY: dict[str, str] = {}


def _metadata() -> struct_pb2.Struct:
    metadata = struct_pb2.Struct()
    metadata.update({"source": "chat", "score": 0.5, "tags": ["a", "b"]})
    return metadata


def valid_request(name: str) -> Message:
    """A request of each method that succeeds (or is NOT_FOUND), to be varied."""
    recent = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    message = spb.Message(
        role="user", content="Alice likes green tea", run_id="r1", metadata=_metadata()
    )
    memory = mpb.Memory(
        kind=mpb.MEMORY_KIND_SEMANTIC,
        content="Bob moved to Lisbon",
        topics=["travel"],
        metadata=_metadata(),
        source_message_ids=["m1"],
        agent_id="agent",
        session_id="s1",
    )
    fact = mpb.Memory(kind=mpb.MEMORY_KIND_FACT, key="city", content="Lisbon")
    known_id = KNOWN_MEMORY.get("id", str(uuid.uuid4()))
    requests_by_name: dict[str, Message] = {
        "AppendMessages": spb.AppendMessagesRequest(
            user_id="fuzz-a",
            session_id="s1",
            agent_id="agent",
            messages=[message, spb.Message(role="assistant", content="Noted", create_time=recent)],
            ttl=duration_pb2.Duration(seconds=3600),
        ),
        "GetHistory": spb.GetHistoryRequest(user_id="fuzz-a", session_id="s1", last_messages=5),
        "ListSessions": spb.ListSessionsRequest(user_id="fuzz-a", agent_id="agent", page_size=1),
        "DeleteSession": spb.DeleteSessionRequest(user_id="fuzz-b", session_id="s1"),
        "DeleteUserSessions": spb.DeleteUserSessionsRequest(user_id="fuzz-b"),
        "DeleteSessionsBefore": spb.DeleteSessionsBeforeRequest(user_id="fuzz-b", cutoff=recent),
        "CreateMemory": mpb.CreateMemoryRequest(user_id="fuzz-a", memory=memory, request_id="q1"),
        "BatchCreateMemories": mpb.BatchCreateMemoriesRequest(
            user_id="fuzz-a",
            requests=[
                mpb.CreateMemoryRequest(memory=memory),
                mpb.CreateMemoryRequest(memory=fact, ttl=duration_pb2.Duration(seconds=60)),
            ],
        ),
        "GetMemory": mpb.GetMemoryRequest(user_id=KNOWN_USER, id=known_id),
        "GetFact": mpb.GetFactRequest(user_id="fuzz-a", key="city"),
        "ListMemories": mpb.ListMemoriesRequest(
            user_id="fuzz-a",
            filters=mpb.MemoryFilters(
                kinds=[mpb.MEMORY_KIND_SEMANTIC], topics=["travel"], created_after=recent
            ),
            page_size=1,
        ),
        "UpdateMemory": mpb.UpdateMemoryRequest(
            user_id=KNOWN_USER,
            memory=mpb.Memory(
                id=known_id, content="Bob moved to Porto", topics=["travel"], metadata=_metadata()
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["content", "topics", "metadata"]),
            reason="corrected",
        ),
        "DeleteMemory": mpb.DeleteMemoryRequest(user_id="fuzz-a", id=str(uuid.uuid4())),
        "DeleteUserMemories": mpb.DeleteUserMemoriesRequest(user_id="fuzz-b"),
        "DeleteAllMemories": mpb.DeleteAllMemoriesRequest(confirm="no"),
        "GetMemoryHistory": mpb.GetMemoryHistoryRequest(user_id=KNOWN_USER, id=known_id),
        "SearchMemories": mpb.SearchMemoriesRequest(
            user_id="fuzz-a",
            query="where does Bob live",
            limit=3,
            kinds=[mpb.MEMORY_KIND_SEMANTIC],
            topics=["travel"],
            created_after=recent,
            recency_weight=0.2,
        ),
        "ExtractMemories": mpb.ExtractMemoriesRequest(user_id="fuzz-a", session_id="s1"),
        "GetJob": mpb.GetJobRequest(user_id="fuzz-a", id=str(uuid.uuid4())),
    }
    return requests_by_name[name]


def variant_strategy(method: MethodDescriptor) -> st.SearchStrategy[Any]:
    """A valid request with one or two fields, at any depth, fuzzed."""
    return (
        st.builds(valid_request, st.just(method.name))
        .flatmap(lambda base: variants(base, OVERRIDES))
        .map(_made_safe)
    )


def _made_safe(request: Message) -> Message:
    """The fuzz shares Postgres with other tests: a purge of every user's
    sessions only reaches back to 1971, so it deletes nothing of theirs."""
    if isinstance(request, spb.DeleteSessionsBeforeRequest) and request.all_users:
        request.cutoff.seconds = min(request.cutoff.seconds, 31_536_000)
    return request


class ErrorLog(logging.Handler):
    """Collects every error logged while the fuzz runs (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
async def fuzz_channel(
    resources: Resources, error_log: ErrorLog
) -> AsyncIterator[grpc.aio.Channel]:
    """A server of its own on another Redis database, so that no worker takes
    the jobs fuzzed calls enqueue; search waits for the index only briefly."""
    assert resources.settings.redis_url is not None
    url = urlsplit(resources.settings.redis_url)._replace(path=f"/{FUZZ_REDIS_DB}").geturl()
    settings_ = resources.settings.model_copy(
        update={"redis_url": url, "max_index_wait": timedelta(seconds=0.2)}
    )
    own = Resources(
        settings=settings_,
        postgres=resources.postgres,
        redis=Redis.from_url(url),
        redis_mux=MultiplexedRedis(url, timeout=settings_.store_timeout.total_seconds()),
        tokens=resources.tokens,
        embedder=resources.embedder,
        arq=ArqRedis(connection_pool=ConnectionPool.from_url(url), default_queue_name=QUEUE_NAME),
    )
    await own.redis.flushdb()
    running = await start_server(settings_, own)
    await running.health.check_once()
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            reply = await memory_grpc.MemoryServiceStub(channel).CreateMemory(
                mpb.CreateMemoryRequest(
                    user_id=KNOWN_USER,
                    memory=mpb.Memory(kind=mpb.MEMORY_KIND_SEMANTIC, content="Carol plays chess"),
                )
            )
            KNOWN_MEMORY["id"] = reply.memory.id
            yield channel
    finally:
        await running.stop(grace=1.0)
        await own.redis.flushdb()
        await own.redis.aclose()
        await own.redis_mux.aclose()
        await own.arq.aclose(close_connection_pool=True)


async def row_counts(resources: Resources, users: list[str]) -> tuple[int, ...]:
    """What the API writes for these users: sessions, messages, the memory
    events of API writes, ExtractMemories jobs. (Not memory rows: a worker's
    extraction may add those at any time; each API write of one records an
    event in the same transaction.)"""
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute(
            """
            SELECT (SELECT count(*) FROM sessions WHERE user_id = ANY(%(u)s)),
                   (SELECT count(*) FROM messages WHERE user_id = ANY(%(u)s)),
                   (SELECT count(*) FROM memory_events
                     WHERE user_id = ANY(%(u)s) AND actor = 'api'),
                   (SELECT count(*) FROM extraction_jobs
                     WHERE user_id = ANY(%(u)s) AND trigger = 'api')
            """,
            {"u": users},
        )
        row = await cursor.fetchone()
    assert row is not None
    return tuple(int(value) for value in row)


def users_of(request: Message) -> list[str]:
    user_id = getattr(request, "user_id", "")
    return [*USERS, user_id] if user_id and "\x00" not in user_id else list(USERS)


async def call(
    channel: grpc.aio.Channel, method: MethodDescriptor, request: Message | bytes
) -> tuple[grpc.StatusCode, str]:
    output = method.output_type._concrete_class  # type: ignore[attr-defined]
    callable_ = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda r: r if isinstance(r, bytes) else r.SerializeToString(),
        response_deserializer=output.FromString,
    )
    try:
        await callable_(request, timeout=20)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def check_call(
    channel: grpc.aio.Channel,
    resources: Resources,
    error_log: ErrorLog,
    method: MethodDescriptor,
    request: Message | bytes,
) -> grpc.StatusCode:
    users = users_of(request) if isinstance(request, Message) else list(USERS)
    before = await row_counts(resources, users)
    error_log.records.clear()
    code, details = await call(channel, method, request)
    assert code in ALLOWED, f"{method.name} answered {code.name}: {details}"
    if code is not grpc.StatusCode.OK:
        assert await row_counts(resources, users) == before, f"failed {method.name} wrote rows"
    assert not error_log.records, [r.getMessage()[:300] for r in error_log.records]
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return code


# Hypothesis drives sync tests: it runs in a thread and sends each call to the
# server's event loop, where the channel and the stores live.
_loop: asyncio.AbstractEventLoop | None = None


def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    assert _loop is not None
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result()


async def run_off_loop(test: Callable[[], None]) -> None:
    global _loop
    _loop = asyncio.get_running_loop()
    await asyncio.to_thread(test)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
async def test_every_field_of_every_method_fuzzed_in_a_valid_request(
    fuzz_channel: grpc.aio.Channel,
    resources: Resources,
    error_log: ErrorLog,
    method: MethodDescriptor,
) -> None:
    @FUZZ
    @given(request=variant_strategy(method))
    def fuzz(request: Message) -> None:
        on_loop(check_call(fuzz_channel, resources, error_log, method, request))

    await run_off_loop(fuzz)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
async def test_every_method_answers_random_requests_with_a_status(
    fuzz_channel: grpc.aio.Channel,
    resources: Resources,
    error_log: ErrorLog,
    method: MethodDescriptor,
) -> None:
    @settings(FUZZ, max_examples=max(5, EXAMPLES // 2))
    @given(request=request_strategy(method))
    def fuzz(request: Message) -> None:
        on_loop(check_call(fuzz_channel, resources, error_log, method, request))

    await run_off_loop(fuzz)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
async def test_every_method_answers_arbitrary_bytes_with_a_status(
    fuzz_channel: grpc.aio.Channel,
    resources: Resources,
    error_log: ErrorLog,
    method: MethodDescriptor,
) -> None:
    @settings(FUZZ, max_examples=max(5, EXAMPLES // 3))
    @given(raw=st.binary(max_size=300))
    def fuzz(raw: bytes) -> None:
        on_loop(check_call(fuzz_channel, resources, error_log, method, raw))

    await run_off_loop(fuzz)


def method_named(name: str) -> MethodDescriptor:
    return next(method for method in METHODS if method.name == name)


@st.composite
def batches_with_one_fuzzed_item(draw: st.DrawFn) -> mpb.BatchCreateMemoriesRequest:
    user_id = f"fuzz-batch-{uuid.uuid4().hex[:8]}"
    good = [
        mpb.CreateMemoryRequest(
            memory=mpb.Memory(kind=mpb.MEMORY_KIND_SEMANTIC, content=f"fact {i} {user_id}")
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    fuzzed = draw(requests(mpb.CreateMemoryRequest.DESCRIPTOR, OVERRIDES))
    fuzzed.user_id = draw(st.sampled_from(["", user_id]))
    good.insert(draw(st.integers(0, len(good))), fuzzed)
    return mpb.BatchCreateMemoriesRequest(user_id=user_id, requests=good)


@st.composite
def appends_with_one_fuzzed_message(draw: st.DrawFn) -> spb.AppendMessagesRequest:
    good = [
        spb.Message(role="user", content=f"message {i}") for i in range(draw(st.integers(1, 4)))
    ]
    fuzzed = draw(requests(spb.Message.DESCRIPTOR, OVERRIDES))
    good.insert(draw(st.integers(0, len(good))), fuzzed)
    return spb.AppendMessagesRequest(
        user_id=f"fuzz-append-{uuid.uuid4().hex[:8]}", session_id="s", messages=good
    )


@pytest.mark.parametrize(
    ("name", "strategy"),
    [
        ("BatchCreateMemories", batches_with_one_fuzzed_item()),
        ("AppendMessages", appends_with_one_fuzzed_message()),
    ],
)
async def test_a_batch_with_one_bad_item_writes_nothing(
    fuzz_channel: grpc.aio.Channel,
    resources: Resources,
    error_log: ErrorLog,
    name: str,
    strategy: st.SearchStrategy[Message],
) -> None:
    method = method_named(name)
    outcomes: set[grpc.StatusCode] = set()

    @settings(FUZZ, max_examples=EXAMPLES * 2)
    @given(request=strategy)
    def fuzz(request: Message) -> None:
        outcomes.add(on_loop(check_call(fuzz_channel, resources, error_log, method, request)))

    await run_off_loop(fuzz)
    assert grpc.StatusCode.INVALID_ARGUMENT in outcomes  # the bad items were bad
