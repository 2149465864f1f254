"""The composition root: every pool and client a process shares, built once.

The server hands it to servicers; the worker's on_startup hands it to jobs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from arq.connections import ArqRedis
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from server.embedding import Embedder
from server.errors import FailedPrecondition, StoreUnavailable
from server.job_queue import QUEUE_NAME
from server.settings import Settings
from server.stores.migrations import pending_migrations
from server.stores.postgres_pool import DeadlinePool
from server.stores.redis_mux import MultiplexedRedis
from server.stores.search_store import HNSW_SESSION_OPTIONS
from server.tokens import TokenCounter


@dataclass
class Resources:
    settings: Settings
    postgres: AsyncConnectionPool[AsyncConnection[TupleRow]]
    # General Redis client: health checks and anything off the hot path.
    redis: Redis
    # The session window's client: pipelined, far cheaper per call (redis_mux.py).
    redis_mux: MultiplexedRedis
    tokens: TokenCounter
    embedder: Embedder
    arq: ArqRedis

    @classmethod
    async def open(cls, settings: Settings) -> Resources:
        """Build the pools. Does not wait for the stores: a server starts
        while they are down and health reports NOT_SERVING until they are up."""
        if not settings.postgres_url or not settings.redis_url:
            raise FailedPrecondition(
                "MEMORYD_POSTGRES_URL and MEMORYD_REDIS_URL must be set "
                "(`memoryd up` sets them for the embedded stack)"
            )
        timeout = settings.store_timeout.total_seconds()
        timeout_ms = int(timeout * 1000)
        postgres = DeadlinePool(
            settings.postgres_url,
            statement_timeout_ms=timeout_ms,
            min_size=settings.postgres_pool_min,
            max_size=settings.postgres_pool_max,
            timeout=timeout,
            # A statement that outlives the store timeout (or the call's deadline,
            # see postgres_pool) is cancelled by the server; search's HNSW
            # settings apply to the whole session (see search_store).
            kwargs={"options": f"-c statement_timeout={timeout_ms} {HNSW_SESSION_OPTIONS}"},
            # Connections broken by a Postgres restart are replaced on checkout,
            # not handed to a call that would then fail.
            check=AsyncConnectionPool.check_connection,
            open=False,
        )
        await postgres.open(wait=False)
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # A connection broken by a Redis restart is retried on a new one.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            retry_on_error=[RedisConnectionError],
        )
        # Loading the model takes seconds of CPU: off the loop, once, at start.
        embedder = await asyncio.to_thread(Embedder.load, settings)
        # The job queue's client: arq's Redis subclass on a pool of its own.
        # Not arq's create_pool, which pings (retrying for seconds) and fails
        # when Redis is down; like the pools above, this one connects lazily.
        arq = ArqRedis(
            connection_pool=ConnectionPool.from_url(
                settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
            ),
            default_queue_name=QUEUE_NAME,
        )
        return cls(
            settings=settings,
            postgres=postgres,
            redis=redis,
            redis_mux=MultiplexedRedis(settings.redis_url, timeout=timeout),
            tokens=TokenCounter(settings.tokenizer),
            embedder=embedder,
            arq=arq,
        )

    async def check_ready(self) -> None:
        """Raise StoreUnavailable unless Postgres and Redis answer and the
        schema is current."""
        timeout = self.settings.store_timeout.total_seconds()
        async with asyncio.timeout(timeout):
            await self.redis.ping()
            async with self.postgres.connection() as conn:
                pending = await pending_migrations(conn)
        if pending:
            raise StoreUnavailable(
                f"migrations {', '.join(pending)} are not applied; run `memoryd migrate`"
            )

    async def close(self) -> None:
        await self.postgres.close()
        await self.redis.aclose()
        await self.redis_mux.aclose()
        await self.arq.aclose(close_connection_pool=True)
