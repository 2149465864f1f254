"""Metrics, JSON logs and traces of a real server and worker.

The stack here has a Postgres database and a Redis database of its own, so
its queue depth and embed backlog are its own: no other test's worker takes
its jobs or embeds its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from arq.connections import ArqRedis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import ConnectionPool, Redis

from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server import tracing
from server.api.app import RunningServer, start_server
from server.extraction.candidates import Extractor
from server.job_queue import QUEUE_NAME
from server.logs import RequestIdFilter, json_formatter
from server.metrics import MetricsEndpoint, WorkerMetrics
from server.resources import Resources
from server.stack_file import StoreUrls
from server.stores.migrations import apply_migrations
from server.stores.redis_mux import MultiplexedRedis
from tests.integration.conftest import make_test_extractor
from tests.support.workers import worker_with_state
from workers.context import WorkerState
from workers.instrument import start_worker_metrics

if TYPE_CHECKING:
    MemoryStub = memory_grpc.MemoryServiceAsyncStub
    SessionStub = session_grpc.SessionServiceAsyncStub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Neither the session's stack (0) nor isolated_stack's (9).
OBSERVED_REDIS_DB = 10
SESSIONS = "memoryd.v1.SessionService"
MEMORIES = "memoryd.v1.MemoryService"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class ObservedStack:
    resources: Resources
    server: RunningServer
    channel: grpc.aio.Channel
    spans: InMemorySpanExporter
    worker_metrics: WorkerMetrics
    worker_endpoint: MetricsEndpoint

    @property
    def server_metrics_url(self) -> str:
        assert self.server.metrics_endpoint is not None
        return f"http://{self.server.metrics_endpoint.address}/metrics"

    @property
    def worker_metrics_url(self) -> str:
        return f"http://{self.worker_endpoint.address}/metrics"


@pytest.fixture(scope="module")
async def observed(store_urls: StoreUrls, resources: Resources) -> AsyncIterator[ObservedStack]:
    assert store_urls.postgres_url is not None and store_urls.redis_url is not None
    dbname = f"observed_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(
        store_urls.postgres_url, autocommit=True
    ) as admin:
        await admin.execute(f"CREATE DATABASE {dbname}")
    postgres_url = make_conninfo(store_urls.postgres_url, dbname=dbname)
    await apply_migrations(postgres_url)
    redis_url = urlsplit(store_urls.redis_url)._replace(path=f"/{OBSERVED_REDIS_DB}").geturl()
    settings = resources.settings.model_copy(
        update={
            "postgres_url": postgres_url,
            "redis_url": redis_url,
            "metrics_listen": "127.0.0.1:0",
            "worker_metrics_listen": "127.0.0.1:0",
        }
    )
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(postgres_url, min_size=1, open=False)
    await pool.open(wait=True)
    own = Resources(
        settings=settings,
        postgres=pool,
        redis=Redis.from_url(redis_url),
        redis_mux=MultiplexedRedis(redis_url, timeout=settings.store_timeout.total_seconds()),
        tokens=resources.tokens,
        embedder=resources.embedder,
        arq=ArqRedis(
            connection_pool=ConnectionPool.from_url(redis_url), default_queue_name=QUEUE_NAME
        ),
    )
    await own.redis.flushdb()
    spans = InMemorySpanExporter()
    # Before the server starts: its interceptor takes the tracing in force then.
    tracing.install(SimpleSpanProcessor(spans), service_name="memoryd-test")
    server = await start_server(settings, own)
    await server.health.check_once()
    worker_metrics, worker_endpoint = start_worker_metrics(
        settings.worker_metrics_address() or "", own
    )
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield ObservedStack(own, server, channel, spans, worker_metrics, worker_endpoint)
    finally:
        await asyncio.to_thread(worker_endpoint.stop)
        await server.stop(grace=1.0)
        tracing.uninstall()
        await own.redis.flushdb()
        await own.redis.aclose()
        await own.redis_mux.aclose()
        await own.arq.aclose(close_connection_pool=True)
        await pool.close()


@contextlib.asynccontextmanager
async def running_worker(stack: ObservedStack, extractor: Extractor | None) -> AsyncIterator[None]:
    """A real arq worker on the stack's queue, counting into its worker metrics."""
    state = WorkerState(
        settings=stack.resources.settings,
        resources=stack.resources,
        extractor=extractor,
        metrics=stack.worker_metrics,
    )
    async with worker_with_state(state):
        yield


async def scrape(url: str) -> Samples:
    """GET /metrics. From a thread: the worker's store gauges are read on this loop."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    samples: Samples = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(get)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def has(samples: Samples, name: str) -> bool:
    return any(sample_name == name for sample_name, _ in samples)


def traced_metadata(request_id: str) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", request_id),)


@pytest.fixture
def sessions(observed: ObservedStack) -> SessionStub:
    return session_grpc.SessionServiceStub(observed.channel)


@pytest.fixture
def memories(observed: ObservedStack) -> MemoryStub:
    return memory_grpc.MemoryServiceStub(observed.channel)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the process logs at INFO, as `MEMORYD_LOG_FORMAT=json` writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(json_formatter("test"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def log_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def append(sessions: SessionStub, user_id: str, session_id: str, *texts: str) -> None:
    await sessions.AppendMessages(
        spb.AppendMessagesRequest(
            user_id=user_id,
            session_id=session_id,
            messages=[spb.Message(role="user", content=text) for text in texts],
        )
    )


async def history(sessions: SessionStub, user_id: str, session_id: str) -> int:
    reply = await sessions.GetHistory(
        spb.GetHistoryRequest(user_id=user_id, session_id=session_id, last_messages=2)
    )
    return len(reply.messages)


async def test_calls_are_counted_and_timed_by_method_and_status(
    observed: ObservedStack, sessions: SessionStub, user_id: str
) -> None:
    before = await scrape(observed.server_metrics_url)
    await append(sessions, user_id, "s1", "hello", "there")
    assert await history(sessions, user_id, "s1") == 2
    assert await history(sessions, user_id, "s1") == 2
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sessions.GetHistory(spb.GetHistoryRequest(user_id="", session_id="s1"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await scrape(observed.server_metrics_url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "memoryd_rpc_calls_total"
    history_call = {"service": SESSIONS, "method": "GetHistory"}
    assert moved(calls, **history_call, code="OK") == 2
    assert moved(calls, **history_call, code="INVALID_ARGUMENT") == 1
    assert moved(calls, service=SESSIONS, method="AppendMessages", code="OK") == 1
    # The histogram has every call, whatever its status.
    assert moved("memoryd_rpc_duration_seconds_count", **history_call) == 3
    assert moved("memoryd_rpc_duration_seconds_bucket", **history_call, le="+Inf") == 3
    assert moved("memoryd_rpc_duration_seconds_sum", **history_call) > 0


async def test_history_served_after_a_redis_flush_counts_a_miss(
    observed: ObservedStack, sessions: SessionStub, user_id: str
) -> None:
    await append(sessions, user_id, "s1", "one", "two", "three")
    reads = "memoryd_session_window_reads_total"
    before = await scrape(observed.server_metrics_url)
    assert await history(sessions, user_id, "s1") == 2
    await observed.resources.redis.flushdb()
    assert await history(sessions, user_id, "s1") == 2  # rebuilt from Postgres
    assert await history(sessions, user_id, "s1") == 2  # from the rebuilt window
    after = await scrape(observed.server_metrics_url)
    assert value(after, reads, result="hit") - value(before, reads, result="hit") == 2
    assert value(after, reads, result="miss") - value(before, reads, result="miss") == 1


async def test_pool_usage_is_served_by_server_and_worker(
    observed: ObservedStack, sessions: SessionStub, user_id: str
) -> None:
    before = await scrape(observed.server_metrics_url)
    await append(sessions, user_id, "s1", "hello")
    after = await scrape(observed.server_metrics_url)
    requests = "memoryd_postgres_pool_requests_total"
    assert value(after, requests) > value(before, requests)
    assert value(after, "memoryd_postgres_pool_connections", state="open") >= 1
    assert value(after, "memoryd_postgres_pool_max_connections") > 0
    assert has(after, "memoryd_postgres_pool_waiting_requests")
    worker = await scrape(observed.worker_metrics_url)
    assert value(worker, "memoryd_postgres_pool_connections", state="open") >= 1


async def test_queue_depth_and_embed_lag_follow_the_backlog(
    observed: ObservedStack, memories: MemoryStub, user_id: str
) -> None:
    # No worker runs yet: the embed job waits in the queue, the row unembedded.
    created = await memories.CreateMemory(
        pb.CreateMemoryRequest(
            user_id=user_id, memory=pb.Memory(kind=pb.MEMORY_KIND_SEMANTIC, content="Likes tea")
        )
    )
    assert created.memory.state == pb.MEMORY_STATE_PENDING_INDEX
    waiting = await scrape(observed.worker_metrics_url)
    assert value(waiting, "memoryd_job_queue_depth") >= 1
    assert value(waiting, "memoryd_embed_pending_memories") >= 1
    assert value(waiting, "memoryd_embed_lag_seconds") > 0
    jobs = "memoryd_jobs_total"
    embed_done = {"job": "embed_memories", "outcome": "succeeded"}
    async with running_worker(observed, extractor=None), asyncio.timeout(60):
        while True:
            drained = await scrape(observed.worker_metrics_url)
            if (
                value(drained, "memoryd_embed_pending_memories") == 0
                and value(drained, "memoryd_job_queue_depth") == 0
                and value(drained, jobs, **embed_done) >= 1
            ):
                break
            await asyncio.sleep(0.1)
    assert value(drained, "memoryd_embed_lag_seconds") == 0
    assert value(drained, "memoryd_job_duration_seconds_count", job="embed_memories") >= 1


async def test_a_failing_job_is_counted_as_failed(
    observed: ObservedStack, memories: MemoryStub, user_id: str
) -> None:
    failed = {"job": "extract_memories", "outcome": "failed"}
    before = await scrape(observed.worker_metrics_url)
    # A worker without an extractor fails every extraction job it takes.
    async with running_worker(observed, extractor=None):
        await memories.ExtractMemories(
            pb.ExtractMemoriesRequest(
                user_id=user_id, messages=[spb.Message(role="user", content="I live in Rome.")]
            )
        )
        async with asyncio.timeout(60):
            while True:
                after = await scrape(observed.worker_metrics_url)
                if value(after, "memoryd_jobs_total", **failed) > value(
                    before, "memoryd_jobs_total", **failed
                ):
                    break
                await asyncio.sleep(0.1)


async def test_a_call_and_the_job_it_enqueues_share_request_id_and_trace(
    observed: ObservedStack,
    memories: MemoryStub,
    user_id: str,
    json_log: io.StringIO,
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    observed.spans.clear()
    extractor = make_test_extractor(observed.resources.settings, observed.resources.embedder)
    before = await scrape(observed.worker_metrics_url)
    async with running_worker(observed, extractor=extractor):
        reply = await memories.ExtractMemories(
            pb.ExtractMemoriesRequest(
                user_id=user_id, messages=[spb.Message(role="user", content="I live in Rome.")]
            ),
            metadata=traced_metadata(request_id),
        )
        async with asyncio.timeout(60):
            while True:
                job = await memories.GetJob(pb.GetJobRequest(user_id=user_id, id=reply.job.id))
                if job.job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED):
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the job's span ends after its row is written
    assert job.job.state == pb.JOB_STATE_SUCCEEDED

    # One JSON object per line; the call's line and the job's lines carry the request id.
    lines = log_lines(json_log)
    call = next(
        line
        for line in lines
        if line.get("method") == f"/{MEMORIES}/ExtractMemories" and line["request_id"] == request_id
    )
    assert call["status"] == "OK" and call["duration_ms"] >= 0
    assert {"time", "level", "logger", "message"} <= call.keys()
    assert any(
        line["logger"].startswith(("workers.", "server.extraction"))
        and line["request_id"] == request_id
        for line in lines
    ), lines

    spans: tuple[ReadableSpan, ...] = observed.spans.get_finished_spans()
    rpc = next(s for s in spans if s.name == f"{MEMORIES}/ExtractMemories")
    # Only this call's job: an earlier test's failed job may be retried meanwhile.
    [job_span] = [
        s
        for s in spans
        if s.name == "job extract_memories"
        and (s.attributes or {}).get(tracing.REQUEST_ID_ATTRIBUTE) == request_id
    ]
    assert rpc.context is not None and job_span.context is not None
    assert job_span.context.trace_id == rpc.context.trace_id
    assert job_span.parent is not None and job_span.parent.span_id == rpc.context.span_id
    assert rpc.attributes is not None and job_span.attributes is not None
    assert rpc.attributes[tracing.REQUEST_ID_ATTRIBUTE] == request_id

    after = await scrape(observed.worker_metrics_url)
    succeeded = "memoryd_extraction_jobs_total"
    assert value(after, succeeded, outcome="succeeded") > value(
        before, succeeded, outcome="succeeded"
    )


async def test_an_error_call_sets_an_error_span(
    observed: ObservedStack, memories: MemoryStub
) -> None:
    observed.spans.clear()
    with pytest.raises(grpc.aio.AioRpcError):
        await memories.GetMemory(pb.GetMemoryRequest(user_id="", id="x"))
    (span,) = [s for s in observed.spans.get_finished_spans() if s.name.endswith("/GetMemory")]
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert not span.status.is_ok
