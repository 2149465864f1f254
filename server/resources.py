"""The composition root: every pool and client a process shares, built once.

The server hands it to servicers; the worker's on_startup hands it to jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import psycopg
from arq.connections import ArqRedis
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.crypto import Cipher
from server.embedding import Embedder
from server.errors import FailedPrecondition, StoreUnavailable
from server.job_queue import QUEUE_NAME
from server.settings import Settings
from server.stores import key_store
from server.stores.migrations import pending_migrations
from server.stores.postgres_pool import DeadlinePool
from server.stores.redis_mux import MultiplexedRedis
from server.stores.search_store import HNSW_SESSION_OPTIONS
from server.tokens import TokenCounter

# How long a starting process checks its keys against the data before it
# leaves the question to health (the stores may be down).
_START_CHECK_S = 2.0


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
    # Seals contents at rest; disabled (plaintext) without MEMORYD_ENCRYPTION_KEY.
    cipher: Cipher = field(default_factory=Cipher.disabled)

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
            cipher=Cipher(settings.encryption_keys()),
        )

    async def check_ready(self) -> None:
        """Raise StoreUnavailable unless Postgres and Redis answer and the
        schema is current; FailedPrecondition when the encryption keys do not
        match the data."""
        timeout = self.settings.store_timeout.total_seconds()
        async with asyncio.timeout(timeout):
            await self.redis.ping()
            async with self.postgres.connection() as conn:
                pending = await pending_migrations(conn)
                if not pending:
                    await key_store.check(conn, self.cipher)
        if pending:
            raise StoreUnavailable(
                f"migrations {', '.join(pending)} are not applied; run `memoryd migrate`"
            )

    async def check_keys_at_start(self) -> None:
        """FailedPrecondition when the encryption keys cannot read the stored
        data: a setting that will not heal by waiting, so a process refuses to
        start. Stores that are down or not migrated yet are left to health."""
        # Briefly: a process starts while its stores are down, and must not wait on them.
        with contextlib.suppress(
            StoreUnavailable,
            psycopg.OperationalError,
            RedisConnectionError,
            RedisTimeoutError,
            TimeoutError,
        ):
            async with asyncio.timeout(_START_CHECK_S):
                await self.check_ready()

    async def close(self) -> None:
        await self.postgres.close()
        await self.redis.aclose()
        await self.redis_mux.aclose()
        await self.arq.aclose(close_connection_pool=True)
