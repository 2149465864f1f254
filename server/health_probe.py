"""A client-side gRPC health check, for `memoryd up` to tell when the server is ready."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def dial_target(listen: str) -> str | None:
    """Where to connect to reach a server listening on `listen`; None when the port
    is chosen at bind time (port 0) and so cannot be known from outside."""
    if listen.startswith("unix:"):
        return listen
    host, _, port = listen.rpartition(":")
    if port == "0":
        return None
    # A wildcard bind is reached through loopback.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{host}:{port}"


class HealthProbe:
    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = health_pb2_grpc.HealthStub(self._channel)

    def serving(self, timeout: float = 1.0) -> bool:
        """True when the server's overall health ("" service) is SERVING."""
        try:
            response = self._stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False  # not listening yet, or still starting: ask again later
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self._channel.close()
