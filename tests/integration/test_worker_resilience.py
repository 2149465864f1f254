"""The worker's defences, on the real Valkey: job leases (workers/lease.py)
and a poll loop that outlives Redis going away (workers/worker.py). The
crash tests (tests/crash) kill real processes; these pin the mechanisms."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import func

from server.stack_file import StoreUrls
from tests.support.processes import free_port
from workers.lease import JobLeases
from workers.worker import MemorydWorker

pytestmark = pytest.mark.integration


async def _noop(ctx: dict[str, Any]) -> None:
    return None


def _worker(redis_url: str) -> MemorydWorker:
    return MemorydWorker(
        job_lease=timedelta(seconds=5),
        functions=[func(_noop, name="noop")],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name="memoryd:test:resilience",
        handle_signals=False,
    )


async def test_a_running_job_holds_a_short_lease_until_it_ends(store_urls: StoreUrls) -> None:
    assert store_urls.redis_url is not None
    redis = ArqRedis.from_url(store_urls.redis_url)
    key = in_progress_key_prefix + "lease-test"
    # arq's own mark: the longest job timeout plus 10 s.
    await redis.psetex(key, 3_600_000, b"1")
    leases = JobLeases(timedelta(seconds=3))
    ctx: dict[str, Any] = {"redis": redis, "job_id": "lease-test"}
    try:
        await leases.on_job_start(ctx)
        await asyncio.sleep(0.1)
        assert 0 < await redis.pttl(key) <= 3000
        await asyncio.sleep(1.5)  # renewed every second: never near expiry
        assert await redis.pttl(key) > 1000
        await leases.on_job_end(ctx)
        await redis.delete(key)  # what arq does when the job ends
        await asyncio.sleep(1.2)
        assert await redis.exists(key) == 0  # a late renewal does not bring it back
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_the_worker_polls_on_through_a_redis_outage_and_gets_its_slots_back(
    store_urls: StoreUrls,
) -> None:
    assert store_urls.redis_url is not None
    worker = _worker(store_urls.redis_url)
    assert worker.in_progress_timeout_s == 5  # the lease, not arq's hour
    down = ArqRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    up = ArqRedis.from_url(store_urls.redis_url)
    try:
        worker._pool = down
        await worker._poll_iteration()  # arq's loop would raise ConnectionError here
        # A job start that Redis failed half-way keeps its slot in arq.
        await worker.sem.acquire()
        worker.job_counter += 1
        worker._pool = up
        await worker._poll_iteration()
        assert worker.job_counter == 0
        assert not worker.sem.locked()
        for _ in range(worker.max_jobs):  # every slot is free again
            await asyncio.wait_for(worker.sem.acquire(), 1)
    finally:
        await down.aclose()
        await up.aclose()
