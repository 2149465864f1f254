"""How a client reaches memoryd: address, credentials, call metadata, retries."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

DEFAULT_TIMEOUT_S = 10.0

# gRPC's own reconnect backoff starts at 1 s and grows to 120 s; a sidecar on
# localhost that restarts should be reached again within our retry budget.
# (grpc.min_reconnect_backoff_ms stays at its default: it is also the time
# one connection attempt may take.)
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Our own loop retries UNAVAILABLE; gRPC's transparent retries stay on.
    ("grpc.enable_retries", 1),
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of calls that fail with UNAVAILABLE, with jittered exponential
    backoff, all within the call's deadline. max_attempts=1 turns retries off."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")

    def delays(self) -> Iterator[float]:
        """The pauses before the 2nd, 3rd, ... attempt ("full jitter")."""
        ceiling = self.initial_backoff
        for _ in range(self.max_attempts - 1):
            yield random.uniform(ceiling / 2, ceiling)
            ceiling = min(ceiling * self.multiplier, self.max_backoff)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Everything both clients need to open a channel and make calls."""

    address: str
    credentials: grpc.ChannelCredentials | None
    metadata: tuple[tuple[str, str], ...]
    timeout: float | None
    retry: RetryPolicy
    options: tuple[tuple[str, Any], ...]


def channel_config(
    address: str,
    *,
    token: str | None,
    tls: bool,
    root_certificates: bytes | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
    credentials: grpc.ChannelCredentials | None,
    timeout: float | None,
    retry: RetryPolicy | None,
    options: Sequence[tuple[str, Any]],
) -> ChannelConfig:
    if not address:
        raise ValueError("address is required: host:port or unix:/path/to/socket")
    if credentials is None and (tls or root_certificates or private_key or certificate_chain):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
        )
    # The token travels as plain call metadata rather than call credentials,
    # which gRPC refuses on the insecure localhost channel a sidecar uses.
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return ChannelConfig(
        address=address,
        credentials=credentials,
        metadata=metadata,
        timeout=timeout,
        retry=retry or RetryPolicy(),
        options=(*_CHANNEL_OPTIONS, *options),
    )


def open_channel(config: ChannelConfig) -> grpc.Channel:
    if config.credentials is None:
        return grpc.insecure_channel(config.address, options=config.options)
    return grpc.secure_channel(config.address, config.credentials, options=config.options)


def open_aio_channel(config: ChannelConfig) -> grpc.aio.Channel:
    if config.credentials is None:
        return grpc.aio.insecure_channel(config.address, options=config.options)
    return grpc.aio.secure_channel(config.address, config.credentials, options=config.options)
