"""Clients against the real server of tests/integration/conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from arq.worker import Worker

from memoryd.client import AsyncMemoryClient
from memoryd.v1 import memory_service_pb2 as mpb
from server.api.app import RunningServer
from server.resources import Resources
from server.settings import Settings
from tests.support.workers import stop_worker
from workers.settings import worker_settings


async def _unembedded(resources: Resources) -> int:
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM memories WHERE embedding IS NULL")
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


@pytest.fixture(scope="package")
async def indexing(
    server: RunningServer, settings: Settings, resources: Resources
) -> AsyncIterator[None]:
    """A real arq worker embedding what these tests write, for this package only.

    The worker stops once every row is embedded, so later suites that run the
    embedding jobs by hand (test_embedding_jobs) find the stores as they expect.
    Its first model load happens inside one test's setup: the load exports the
    model under warnings.catch_warnings in a thread, and pytest resetting the
    warning filters between tests while that runs would turn the exporter's
    warnings into errors that stop the worker.
    """
    worker = Worker(**{**worker_settings(settings), "handle_signals": False})
    task = asyncio.create_task(worker.async_run())
    async with AsyncMemoryClient(server.address, timeout=30) as client:
        memory = await client.memories.add("indexing-probe", "the worker is up")
        async with asyncio.timeout(240):
            while memory.state != mpb.MEMORY_STATE_READY:
                await asyncio.sleep(0.1)
                memory = await client.memories.get("indexing-probe", memory.id)
        await client.memories.clear("indexing-probe")
    yield
    try:
        async with asyncio.timeout(120):
            while True:  # polling Postgres: there is no event to wait on
                if not await _unembedded(resources):
                    break
                await asyncio.sleep(0.2)
    finally:
        await stop_worker(worker, task)


@pytest.fixture
async def client(server: RunningServer, indexing: None) -> AsyncIterator[AsyncMemoryClient]:
    async with AsyncMemoryClient(server.address, timeout=30) as opened:
        yield opened
