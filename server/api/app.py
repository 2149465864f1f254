"""Building and running the gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from memoryd.v1 import memory_service_pb2, session_service_pb2
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.api.health import StoreHealth
from server.api.interceptor import CallGuard, RequestInterceptor
from server.api.limits import server_limits
from server.api.memory_servicer import MemoryServicer
from server.api.rate_limit import rate_limit_guard
from server.api.session_servicer import SessionServicer
from server.extraction.service import ExtractionService
from server.memories import MemoryService
from server.resources import Resources
from server.search import MemorySearch
from server.sessions import SessionService
from server.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAMES = [
    session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    memory_service_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name,
]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: StoreHealth
    address: str
    _health_task: asyncio.Task[None]

    async def stop(self, grace: float) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight calls finish."""
        await self.health.drain()
        await self.server.stop(grace)
        self._health_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._health_task


def _bind_address(listen: str, port: int) -> str:
    if listen.startswith("unix:"):
        return listen
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


async def start_server(
    settings: Settings,
    resources: Resources,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
) -> RunningServer:
    """Start serving on settings.listen (port 0 picks a free port); `interceptors`
    run before the request interceptor (tests use them to observe calls)."""
    guards: list[CallGuard] = []
    if (limiter := rate_limit_guard(settings)) is not None:
        guards.append(limiter)
    server = grpc.aio.server(
        interceptors=[*interceptors, RequestInterceptor(guards)], **server_limits(settings)
    )
    session_grpc.add_SessionServiceServicer_to_server(
        SessionServicer(SessionService(resources)), server
    )
    memories = MemoryService(resources)
    memory_grpc.add_MemoryServiceServicer_to_server(
        MemoryServicer(memories, MemorySearch(resources, memories), ExtractionService(resources)),
        server,
    )
    health = StoreHealth(resources, services=SERVICE_NAMES)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        [
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(settings.listen)
    await health.mark_starting()
    await server.start()
    task = asyncio.create_task(health.run(settings.health_interval.total_seconds()))
    address = _bind_address(settings.listen, port)
    log.info("memoryd listening on %s", address)
    return RunningServer(server=server, health=health, address=address, _health_task=task)


async def serve(settings: Settings) -> None:
    """Run the server until SIGINT or SIGTERM, then shut down gracefully."""
    resources = await Resources.open(settings)
    try:
        running = await start_server(settings, resources)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("shutting down: finishing in-flight calls")
        await running.stop(settings.grace_period.total_seconds())
    finally:
        await resources.close()
