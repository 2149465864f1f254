"""The gRPC server's own limits, from settings: request size and concurrency."""

from __future__ import annotations

from typing import Any

from server.settings import Settings


def server_limits(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for grpc.aio.server. A request over the size limit is
    refused by gRPC with RESOURCE_EXHAUSTED before it is parsed; calls beyond
    max_concurrent_rpcs likewise, before any servicer runs."""
    limits: dict[str, Any] = {
        "options": [("grpc.max_receive_message_length", settings.request_bytes_limit)]
    }
    if settings.max_concurrent_rpcs:
        limits["maximum_concurrent_rpcs"] = settings.max_concurrent_rpcs
    return limits
