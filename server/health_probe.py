"""A client-side gRPC health check, for `memoryd up` to tell when the server is
ready, and for the image's HEALTHCHECK (`python -m server.health_probe`)."""

from __future__ import annotations

import os
import sys

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


def probe_listen(*, listen: str, health_listen: str | None, tls: bool) -> str | None:
    """The listen address a plaintext health check can reach: the health-only
    port when there is one, else the main one unless it speaks TLS (None)."""
    if health_listen:
        return health_listen
    return None if tls else listen


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


def main() -> int:
    """Exit 0 when the server named by MEMORYD_LISTEN / MEMORYD_HEALTH_LISTEN is SERVING.
    Reads the environment only: a health check must not fail on other settings."""
    listen = probe_listen(
        listen=os.environ.get("MEMORYD_LISTEN", "127.0.0.1:50051"),
        health_listen=os.environ.get("MEMORYD_HEALTH_LISTEN"),
        tls=bool(os.environ.get("MEMORYD_TLS_CERT")),
    )
    target = dial_target(listen) if listen else None
    if target is None:
        print(
            "memoryd health check: no plaintext address to ask (TLS without "
            "MEMORYD_HEALTH_LISTEN, or port 0)",
            file=sys.stderr,
        )
        return 1
    probe = HealthProbe(target)
    try:
        return 0 if probe.serving(timeout=4.0) else 1
    finally:
        probe.close()


if __name__ == "__main__":
    sys.exit(main())
