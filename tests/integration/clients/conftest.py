"""Clients against the real server of tests/integration/conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from memoryd.client import AsyncMemoryClient
from memoryd.v1 import memory_service_pb2 as mpb
from server.api.app import RunningServer


@pytest.fixture(scope="session")
async def indexing(server: RunningServer, embedding_worker: None) -> None:
    """The embedding worker has loaded its model and embeds.

    Waited for once, inside one test's setup: the first load exports the model
    under warnings.catch_warnings in a thread, and pytest resetting the warning
    filters between tests while that runs turns the exporter's warnings into
    errors that stop the worker.
    """
    async with AsyncMemoryClient(server.address, timeout=30) as client:
        memory = await client.memories.add("indexing-probe", "the worker is up")
        async with asyncio.timeout(240):
            while memory.state != mpb.MEMORY_STATE_READY:
                await asyncio.sleep(0.1)
                memory = await client.memories.get("indexing-probe", memory.id)
        await client.memories.clear("indexing-probe")


@pytest.fixture
async def client(server: RunningServer, indexing: None) -> AsyncIterator[AsyncMemoryClient]:
    async with AsyncMemoryClient(server.address, timeout=30) as opened:
        yield opened
