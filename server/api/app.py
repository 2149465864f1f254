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
from server import tracing
from server.api.auth import TokenAuth
from server.api.health import StoreHealth
from server.api.interceptor import CallGuard, RequestInterceptor, StreamGuard
from server.api.limits import server_limits
from server.api.memory_servicer import MemoryServicer
from server.api.rate_limit import rate_limit_guard
from server.api.session_servicer import SessionServicer
from server.extraction.service import ExtractionService
from server.memories import MemoryService
from server.metrics import MetricsEndpoint, ServerMetrics
from server.resources import Resources
from server.search import MemorySearch
from server.sessions import SessionService
from server.settings import Settings, read_pem

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
    # The plaintext health-only server on settings.health_listen, if any.
    health_server: grpc.aio.Server | None = None
    health_address: str | None = None
    # With settings.metrics_listen: the counters, and where they are served.
    metrics: ServerMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None

    async def stop(self, grace: float) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight calls finish."""
        await self.health.drain()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(None)
        self._health_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._health_task
        if self.metrics_endpoint is not None:
            await asyncio.to_thread(self.metrics_endpoint.stop)


def _bind_address(listen: str, port: int) -> str:
    if listen.startswith("unix:"):
        return listen
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


def _guards(settings: Settings) -> tuple[list[CallGuard], list[StreamGuard]]:
    """The checks every call passes before its handler, in order."""
    guards: list[CallGuard] = []
    stream_guards: list[StreamGuard] = []
    auth = TokenAuth.from_settings(settings)
    if auth is not None:
        # First: an unauthenticated caller must not spend a user's rate.
        guards.append(auth)
        stream_guards.append(auth.check_stream)
    if (limiter := rate_limit_guard(settings)) is not None:
        guards.append(limiter)
    return guards, stream_guards


async def start_server(
    settings: Settings,
    resources: Resources,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
) -> RunningServer:
    """Start serving on settings.listen (port 0 picks a free port); `interceptors`
    run before the request interceptor (tests use them to observe calls)."""
    guards, stream_guards = _guards(settings)
    metrics = ServerMetrics(resources.postgres) if settings.metrics_listen else None
    request_interceptor = RequestInterceptor(
        guards,
        stream_guards,
        metrics=None if metrics is None else metrics.rpc,
        tracing=tracing.active(),
    )
    server = grpc.aio.server(
        interceptors=[*interceptors, request_interceptor], **server_limits(settings)
    )
    session_grpc.add_SessionServiceServicer_to_server(
        SessionServicer(
            SessionService(
                resources, window_reads=None if metrics is None else metrics.session_window
            )
        ),
        server,
    )
    memories = MemoryService(resources)
    memory_grpc.add_MemoryServiceServicer_to_server(
        MemoryServicer(memories, MemorySearch(resources, memories), ExtractionService(resources)),
        server,
    )
    health = StoreHealth(resources, services=SERVICE_NAMES)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            [
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
    port = _add_port(server, settings)
    health_server, health_address = None, None
    if settings.health_listen:
        # Probes that speak neither TLS nor auth (kubelet's grpc probe) ask here.
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.servicer, health_server)
        health_port = health_server.add_insecure_port(settings.health_listen)
        health_address = _bind_address(settings.health_listen, health_port)
    endpoint = None
    if metrics is not None and settings.metrics_listen:
        endpoint = MetricsEndpoint.start(settings.metrics_listen, metrics.registry)
    await health.mark_starting()
    await server.start()
    if health_server is not None:
        await health_server.start()
        log.info("grpc.health.v1 (plaintext, no token) on %s", health_address)
    task = asyncio.create_task(health.run(settings.health_interval.total_seconds()))
    address = _bind_address(settings.listen, port)
    log.info(
        "memoryd listening on %s (%s, auth %s, reflection %s)",
        address,
        _transport(settings),
        "on" if settings.auth_enabled else "off",
        "on" if settings.reflection else "off",
    )
    return RunningServer(
        server=server,
        health=health,
        address=address,
        _health_task=task,
        health_server=health_server,
        health_address=health_address,
        metrics=metrics,
        metrics_endpoint=endpoint,
    )


def _add_port(server: grpc.aio.Server, settings: Settings) -> int:
    if settings.tls_cert is None or settings.tls_key is None:
        return server.add_insecure_port(settings.listen)
    client_ca = settings.tls_client_ca
    credentials = grpc.ssl_server_credentials(
        [
            (
                read_pem("MEMORYD_TLS_KEY", settings.tls_key),
                read_pem("MEMORYD_TLS_CERT", settings.tls_cert),
            )
        ],
        root_certificates=None
        if client_ca is None
        else read_pem("MEMORYD_TLS_CLIENT_CA", client_ca),
        require_client_auth=client_ca is not None,
    )
    return server.add_secure_port(settings.listen, credentials)


def _transport(settings: Settings) -> str:
    if settings.tls_cert is None:
        return "plaintext"
    return "mTLS" if settings.tls_client_ca is not None else "TLS"


async def serve(settings: Settings) -> None:
    """Run the server until SIGINT or SIGTERM, then shut down gracefully."""
    resources = await Resources.open(settings)
    try:
        await resources.check_keys_at_start()
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
