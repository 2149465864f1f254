"""Postgres or Redis going away: calls fail UNAVAILABLE, health follows, and
nothing stored is lost. Uses its own stores, which it stops and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memoryd.v1 import session_service_pb2 as pb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.api.app import RunningServer, start_server
from server.embedded import EmbeddedStack
from server.resources import Resources
from server.stack_file import StoreUrls
from server.stores.migrations import apply_migrations
from tests.integration.conftest import make_settings
from tests.support.crash import KillableValkey
from tests.support.processes import scratch_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@dataclass
class Outage:
    postgres: EmbeddedStack
    redis: KillableValkey
    session: session_grpc.SessionServiceAsyncStub
    health: health_pb2_grpc.HealthStub

    async def status(self) -> int:
        reply = await self.health.Check(health_pb2.HealthCheckRequest())
        return int(reply.status)

    async def wait_for(self, status: int, seconds: float = 30) -> None:
        async with asyncio.timeout(seconds):
            while await self.status() != status:  # noqa: ASYNC110 (a remote status: no event to await)
                await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def stores() -> Iterator[tuple[EmbeddedStack, KillableValkey, StoreUrls]]:
    # Stores of its own, so that each can be stopped alone.
    with scratch_dir() as root:
        postgres = EmbeddedStack(root / "pg", redis=False)
        valkey = KillableValkey()
        valkey.start()
        urls = StoreUrls(postgres_url=postgres.start().postgres_url, redis_url=valkey.url)
        yield postgres, valkey, urls
        valkey.stop()
        postgres.stop()


@pytest.fixture(scope="module")
async def outage(
    stores: tuple[EmbeddedStack, KillableValkey, StoreUrls],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Outage]:
    postgres, redis, urls = stores
    assert urls.postgres_url is not None
    await apply_migrations(urls.postgres_url)
    settings = make_settings(
        urls,
        tmp_path_factory.mktemp("data"),
        health_interval=timedelta(milliseconds=100),
        store_timeout=timedelta(seconds=2),
    )
    resources = await Resources.open(settings)
    running: RunningServer = await start_server(settings, resources)
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield Outage(
            postgres,
            redis,
            session_grpc.SessionServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )
    await running.stop(grace=1)
    await resources.close()


async def append(outage: Outage, session_id: str, content: str) -> None:
    await outage.session.AppendMessages(
        pb.AppendMessagesRequest(
            user_id="u", session_id=session_id, messages=[pb.Message(role="user", content=content)]
        )
    )


async def history(outage: Outage, session_id: str) -> list[str]:
    reply = await outage.session.GetHistory(
        pb.GetHistoryRequest(user_id="u", session_id=session_id)
    )
    return [m.content for m in reply.messages]


async def expect_unavailable(call: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()


async def test_redis_down_is_unavailable_and_health_recovers(outage: Outage) -> None:
    await outage.wait_for(health_pb2.HealthCheckResponse.SERVING)
    await append(outage, "r", "before")
    outage.redis.stop()
    try:
        await expect_unavailable(append(outage, "r", "during"))
        await expect_unavailable(history(outage, "r"))
        await outage.wait_for(health_pb2.HealthCheckResponse.NOT_SERVING)
    finally:
        outage.redis.start()
    await outage.wait_for(health_pb2.HealthCheckResponse.SERVING)
    # Redis came back empty: the window is rebuilt from Postgres, holding the
    # acknowledged append and nothing of the one that failed.
    assert await history(outage, "r") == ["before"]
    await append(outage, "r", "after")
    assert await history(outage, "r") == ["before", "after"]


async def test_postgres_down_is_unavailable_and_health_recovers(outage: Outage) -> None:
    await outage.wait_for(health_pb2.HealthCheckResponse.SERVING)
    await append(outage, "p", "before")
    outage.postgres.stop()
    try:
        await expect_unavailable(append(outage, "p", "during"))
        await outage.wait_for(health_pb2.HealthCheckResponse.NOT_SERVING)
    finally:
        outage.postgres.start()
    await outage.wait_for(health_pb2.HealthCheckResponse.SERVING)
    assert await history(outage, "p") == ["before"]
