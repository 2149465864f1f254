"""grpc.health.v1 status that follows the stores.

SERVING only while Postgres and Redis answer and migrations are applied;
NOT_SERVING otherwise, and for good once draining starts.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from server.errors import FailedPrecondition, StoreUnavailable
from server.resources import Resources
from server.stores import STORE_DOWN_ERRORS

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StoreHealth:
    def __init__(self, resources: Resources, *, services: list[str]) -> None:
        self.servicer = HealthServicer()
        self._resources = resources
        # "" is the whole server, as probes and grpcurl ask by default.
        self._services = ["", *services]
        self._serving: bool | None = None

    async def _publish(self, serving: bool, why: str = "") -> None:
        if serving == self._serving:
            return
        if serving:
            log.info("stores ready: SERVING")
        else:
            log.warning("NOT_SERVING: %s", why)
        self._serving = serving
        for service in self._services:
            await self.servicer.set(service, SERVING if serving else NOT_SERVING)

    async def check_once(self) -> None:
        try:
            await self._resources.check_ready()
        except (StoreUnavailable, FailedPrecondition) as exc:
            await self._publish(False, exc.message)
        except STORE_DOWN_ERRORS as exc:
            await self._publish(False, f"{type(exc).__name__}: {exc}")
        else:
            await self._publish(True)

    async def mark_starting(self) -> None:
        """NOT_SERVING until the first probe passes (grpc's default is SERVING)."""
        await self._publish(False, "starting")

    async def run(self, interval: float) -> None:
        """Probe the stores forever (until cancelled)."""
        while True:
            await self.check_once()
            await asyncio.sleep(interval)

    async def drain(self) -> None:
        """Report NOT_SERVING from now on, so balancers stop sending calls."""
        await self.servicer.enter_graceful_shutdown()
