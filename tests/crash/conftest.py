"""A whole memoryd of separate OS processes per test: Postgres, Valkey (no
persistence), `memoryd serve` and `memoryd worker`, each one a test can SIGKILL
and start again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.stores.migrations import apply_migrations
from tests.support.crash import KillablePostgres, KillableValkey, MemorydProcess, serve_address
from tests.support.processes import scratch_dir

# Settings of the memoryd processes under test: stores probed and given up on
# quickly, and lost extraction jobs queued again after seconds, not a minute.
PROCESS_SETTINGS = {
    "MEMORYD_STORE_TIMEOUT": "PT2S",
    "MEMORYD_HEALTH_INTERVAL": "PT0.2S",
    "MEMORYD_LOG_LEVEL": "INFO",
    "MEMORYD_EXTRACT_AUTO": "false",
    "MEMORYD_EXTRACT_REQUEUE_AFTER": "PT3S",
    "MEMORYD_JOB_LEASE": "PT6S",
}
# A deadline on every call a test makes: a hang fails as DEADLINE_EXCEEDED
# instead of blocking the run (the tests assert the code, never the time).
CALL_DEADLINE_S = 20.0
T = TypeVar("T")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class CrashStack:
    postgres: KillablePostgres
    valkey: KillableValkey
    server: MemorydProcess
    worker: MemorydProcess
    _channel: grpc.aio.Channel | None = field(default=None)

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            # Reconnects by itself after the server restarts on the same port.
            self._channel = grpc.aio.insecure_channel(self.server.address)
        return self._channel

    @property
    def sessions(self) -> session_grpc.SessionServiceAsyncStub:
        return session_grpc.SessionServiceStub(self.channel)

    @property
    def memories(self) -> memory_grpc.MemoryServiceAsyncStub:
        return memory_grpc.MemoryServiceStub(self.channel)

    async def health(self) -> int:
        reply = await health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=CALL_DEADLINE_S
        )
        return int(reply.status)

    async def wait_health(self, status: int, seconds: float = 60.0) -> None:
        async with asyncio.timeout(seconds):
            while True:
                try:
                    if await self.health() == status:
                        return
                except grpc.aio.AioRpcError:
                    pass  # the server is restarting
                await asyncio.sleep(0.1)

    async def close_channel(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None

    async def all_memories(self, user_id: str) -> list[mpb.Memory]:
        found: list[mpb.Memory] = []
        token = ""
        while True:
            page = await self.memories.ListMemories(
                mpb.ListMemoriesRequest(user_id=user_id, page_size=500, page_token=token),
                timeout=CALL_DEADLINE_S,
            )
            found.extend(page.memories)
            token = page.next_page_token
            if not token:
                return found

    async def wait_all_ready(self, user_id: str, seconds: float = 120.0) -> list[mpb.Memory]:
        """The user's memories once every one is READY (embedded)."""
        async with asyncio.timeout(seconds):
            while True:
                memories = await self.all_memories(user_id)
                if all(m.state == mpb.MEMORY_STATE_READY for m in memories):
                    return memories
                await asyncio.sleep(0.2)


async def eventually(call: Callable[[], Awaitable[T]], *, seconds: float = 60.0) -> T:
    """Retry `call` on UNAVAILABLE (a store or the server coming back)."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            await asyncio.sleep(0.1)


async def wait_job(stack: CrashStack, user_id: str, job_id: str, seconds: float = 120.0) -> mpb.Job:
    """The job once it has finished (SUCCEEDED or FAILED)."""
    finished = (mpb.JOB_STATE_SUCCEEDED, mpb.JOB_STATE_FAILED)
    async with asyncio.timeout(seconds):
        while True:
            reply = await eventually(
                lambda: stack.memories.GetJob(
                    mpb.GetJobRequest(user_id=user_id, id=job_id), timeout=CALL_DEADLINE_S
                )
            )
            if reply.job.state in finished:
                return reply.job
            await asyncio.sleep(0.2)


def semantic(content: str) -> mpb.Memory:
    return mpb.Memory(kind=mpb.MEMORY_KIND_SEMANTIC, content=content)


@pytest.fixture(scope="session")
def crash_stores() -> Iterator[tuple[KillablePostgres, KillableValkey, str]]:
    with scratch_dir("memoryd-crash-") as root:
        postgres = KillablePostgres(root / "postgres")
        valkey = KillableValkey()
        try:
            postgres.start()
            valkey.start()
            yield postgres, valkey, str(root)
        finally:
            valkey.stop()
            postgres.stop()


@pytest.fixture(scope="session")
async def crash_stack(
    crash_stores: tuple[KillablePostgres, KillableValkey, str],
) -> AsyncIterator[CrashStack]:
    """Stores, migrations, then `memoryd serve` (SERVING) and `memoryd worker`
    (past its startup) on them. One for all the crash tests: each process
    takes up to a minute to load the embedding model on a busy machine. A test
    leaves every process running again when it ends, and uses users of its own."""
    postgres, valkey, root = crash_stores
    await apply_migrations(postgres.url)
    env = {
        **PROCESS_SETTINGS,
        "MEMORYD_POSTGRES_URL": postgres.url,
        "MEMORYD_REDIS_URL": valkey.url,
    }
    address = serve_address()
    server = MemorydProcess("serve", log_dir=Path(root), address=address, env=env)
    worker = MemorydProcess("worker", log_dir=Path(root), address=address, env=env)
    stack = CrashStack(postgres=postgres, valkey=valkey, server=server, worker=worker)
    try:
        server.start()
        worker.start()
        server.wait_serving()
        worker.wait_for_log(WORKER_READY)
        yield stack
    finally:
        await stack.close_channel()
        stopped = {name: p.stop() for name, p in (("serve", server), ("worker", worker))}
    for name, code in stopped.items():
        assert code in (None, 0), f"memoryd {name} exited with {code}"


# arq logs each job start; the startup sweep runs once on_startup is done.
WORKER_READY = "cron:sweep_unembedded"
