"""Real embedded Postgres (with pgvector) and Valkey, started once per run on
free ports, plus a real gRPC server over a socket."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from arq.connections import ArqRedis
from arq.worker import Worker
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import ConnectionPool, Redis

from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.api.app import RunningServer, start_server
from server.crypto import Cipher
from server.embedded import EmbeddedStack
from server.embedding import Embedder
from server.extraction.candidates import Extractor
from server.extraction.factory import build_extractor
from server.job_queue import QUEUE_NAME
from server.resources import Resources
from server.sessions import SessionService
from server.settings import Settings
from server.stack_file import StoreUrls
from server.stores.migrations import apply_migrations
from server.stores.redis_mux import MultiplexedRedis
from tests.support.processes import scratch_dir
from tests.support.workers import stop_worker, worker_with_state
from workers.context import WorkerState
from workers.settings import worker_settings

pytestmark = pytest.mark.integration

# The Redis database of isolated_stack's server and worker (the session's use 0).
ISOLATED_REDIS_DB = 9


@pytest.fixture(scope="session")
def embedded_stack() -> Iterator[tuple[EmbeddedStack, StoreUrls]]:
    """The run's embedded stores; the stack's data_dir holds their files
    (postgres/, valkey/), which the encryption tests read."""
    with scratch_dir() as root:
        stack = EmbeddedStack(root / "stack")
        urls = stack.start()
        assert urls.postgres_url is not None
        asyncio.run(apply_migrations(urls.postgres_url))
        yield stack, urls
        stack.stop()


@pytest.fixture(scope="session")
def store_urls(embedded_stack: tuple[EmbeddedStack, StoreUrls]) -> StoreUrls:
    return embedded_stack[1]


def make_settings(urls: StoreUrls, data_dir: Path, **overrides: object) -> Settings:
    return Settings(
        postgres_url=urls.postgres_url,
        redis_url=urls.redis_url,
        data_dir=data_dir,
        listen="127.0.0.1:0",
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def settings(store_urls: StoreUrls, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(store_urls, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    opened = await Resources.open(settings)
    await opened.postgres.wait()
    yield opened
    await opened.close()


@pytest.fixture
def sessions(resources: Resources) -> SessionService:
    return SessionService(resources)


@pytest.fixture
def user_id() -> str:
    """A fresh user per test: tests share the stores, never each other's data."""
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
async def server(settings: Settings, resources: Resources) -> AsyncIterator[RunningServer]:
    running = await start_server(settings, resources)
    await running.health.check_once()  # SERVING before the first test call
    yield running
    await running.stop(grace=1.0)


@pytest.fixture(scope="session")
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as opened:
        yield opened


def make_test_extractor(settings: Settings, embedder: Embedder) -> Extractor:
    """The extractor the tests' workers run: the default one."""
    return build_extractor(settings, embedder)


@pytest.fixture(scope="session")
async def embedding_worker(settings: Settings) -> AsyncIterator[None]:
    """A real arq worker in this process, embedding what the tests create and
    running their extraction jobs."""
    worker = Worker(
        **{**worker_settings(settings, make_extractor=make_test_extractor), "handle_signals": False}
    )
    task = asyncio.create_task(worker.async_run())
    yield
    await stop_worker(worker, task)


@pytest.fixture
def session_stub(channel: grpc.aio.Channel) -> session_grpc.SessionServiceAsyncStub:
    return session_grpc.SessionServiceStub(channel)


@contextlib.asynccontextmanager
async def serving(own: Resources, extractor: Extractor | None) -> AsyncIterator[grpc.aio.Channel]:
    """A real server on `own` and a worker taking its queue's jobs with
    `extractor`; a channel to the server. The caller owns `own`."""
    running = await start_server(own.settings, own)
    await running.health.check_once()
    try:
        async with (
            worker_with_state(
                WorkerState(settings=own.settings, resources=own, extractor=extractor)
            ),
            grpc.aio.insecure_channel(running.address) as channel,
        ):
            yield channel
    finally:
        await running.stop(grace=1.0)


@contextlib.asynccontextmanager
async def isolated_stack(
    resources: Resources, extractor: Extractor, **overrides: object
) -> AsyncIterator[tuple[grpc.aio.Channel, Resources]]:
    """A server and a worker of their own, on the shared Postgres but another
    Redis database (so another job queue): for tests whose worker must run a
    particular extractor or settings without the session's worker taking their
    jobs. Reuses the session's Postgres pool and embedding model."""
    assert resources.settings.redis_url is not None
    url = urlsplit(resources.settings.redis_url)._replace(path=f"/{ISOLATED_REDIS_DB}").geturl()
    settings = resources.settings.model_copy(update={"redis_url": url, **overrides})
    own = Resources(
        settings=settings,
        postgres=resources.postgres,
        redis=Redis.from_url(url),
        redis_mux=MultiplexedRedis(url, timeout=settings.store_timeout.total_seconds()),
        tokens=resources.tokens,
        embedder=resources.embedder,
        arq=ArqRedis(connection_pool=ConnectionPool.from_url(url), default_queue_name=QUEUE_NAME),
    )
    await own.redis.flushdb()

    try:
        async with serving(own, extractor) as channel:
            yield channel, own
    finally:
        await own.redis.flushdb()
        await own.redis.aclose()
        await own.redis_mux.aclose()
        await own.arq.aclose(close_connection_pool=True)


async def new_database(postgres_url: str) -> str:
    """A new, migrated database in the run's Postgres; its conninfo. For tests
    that need a database of their own (the encryption tests: the key registry
    is per database)."""
    name = f"memoryd_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(postgres_url, dbname=name)
    await apply_migrations(url)
    return url


@contextlib.asynccontextmanager
async def stack_on(
    resources: Resources, *, postgres_url: str, redis_db: int, **overrides: object
) -> AsyncIterator[tuple[grpc.aio.Channel, Resources]]:
    """A server and an embedding/extraction worker of their own on another
    database and Redis database, with their own settings (e.g. an encryption
    key), reusing the session's embedding model. Redis is left as it is at the
    end, so a test can start another stack on the same data (a restart)."""
    assert resources.settings.redis_url is not None
    url = urlsplit(resources.settings.redis_url)._replace(path=f"/{redis_db}").geturl()
    settings = resources.settings.model_copy(
        update={"redis_url": url, "postgres_url": postgres_url, **overrides}
    )
    timeout = settings.store_timeout.total_seconds()
    own = Resources(
        settings=settings,
        postgres=AsyncConnectionPool(postgres_url, min_size=1, max_size=4, open=False),
        redis=Redis.from_url(url),
        redis_mux=MultiplexedRedis(url, timeout=timeout),
        tokens=resources.tokens,
        embedder=resources.embedder,
        arq=ArqRedis(connection_pool=ConnectionPool.from_url(url), default_queue_name=QUEUE_NAME),
        cipher=Cipher(settings.encryption_keys()),
    )
    await own.postgres.open()
    extractor = make_test_extractor(settings, resources.embedder)

    try:
        async with serving(own, extractor) as channel:
            yield channel, own
    finally:
        await extractor.aclose()
        await own.postgres.close()
        await own.redis.aclose()
        await own.redis_mux.aclose()
        await own.arq.aclose(close_connection_pool=True)
