"""Prometheus metrics: what the server and the worker count, and the HTTP
endpoint each serves them on (settings.metrics_listen / worker_metrics_address()).

Each process keeps its own registry, built only when its endpoint is
configured: with metrics off nothing here is created and the hot paths test
one `None`. Counters on hot paths are label children bound once, so a call
costs one observe and one inc. Gauges that need a store query (queue depth,
embed lag) are read when Prometheus scrapes, never per call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# Calls range from ~0.2 ms (GetHistory from Redis) to seconds (a search
# waiting for its index): the default buckets start at 5 ms, too coarse.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Jobs range from milliseconds (a sweep with nothing to do) to minutes.
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800)
# A scrape waits this long for the store gauges, then serves the rest without them.
STORE_SCRAPE_TIMEOUT_S = 2.0


# -- the server ----------------------------------------------------------


class MethodMetrics:
    """One RPC method's label children, bound once when the method is first called."""

    __slots__ = ("_by_code", "_calls", "_duration", "_method", "_service")

    def __init__(self, rpc: RpcMetrics, full_method: str) -> None:
        # "/memoryd.v1.SessionService/GetHistory" -> service, method
        service, _, method = full_method.lstrip("/").rpartition("/")
        self._service, self._method = service, method
        self._calls = rpc.calls
        self._duration = rpc.duration.labels(service, method)
        self._by_code = {grpc.StatusCode.OK: rpc.calls.labels(service, method, "OK")}

    def record(self, code: grpc.StatusCode, seconds: float) -> None:
        self._duration.observe(seconds)
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._calls.labels(self._service, self._method, code.name)
        child.inc()


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "memoryd_rpc_duration_seconds",
            "Time to answer a gRPC call, from the interceptor's view.",
            ["service", "method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.calls = Counter(
            "memoryd_rpc_calls",
            "gRPC calls answered, by status code.",
            ["service", "method", "code"],
            registry=registry,
        )

    def for_method(self, full_method: str) -> MethodMetrics:
        return MethodMetrics(self, full_method)


class SessionWindowReads:
    """Where GetHistory found its answer: the Redis window (hit), Postgres
    after the window was missing and rebuilt (miss), or Postgres because the
    request reached past the window (beyond_window)."""

    __slots__ = ("beyond_window", "hit", "miss")

    def __init__(self, registry: CollectorRegistry) -> None:
        reads = Counter(
            "memoryd_session_window_reads",
            "GetHistory reads by where they were served from.",
            ["result"],
            registry=registry,
        )
        self.hit = reads.labels("hit")
        self.miss = reads.labels("miss")
        self.beyond_window = reads.labels("beyond_window")


class ServerMetrics:
    def __init__(self, postgres: AsyncConnectionPool[Any]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc = RpcMetrics(self.registry)
        self.session_window = SessionWindowReads(self.registry)
        self.registry.register(PoolCollector(postgres))


# -- the worker ----------------------------------------------------------


class WorkerMetrics:
    def __init__(self, postgres: AsyncConnectionPool[Any]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.job_duration = Histogram(
            "memoryd_job_duration_seconds",
            "Run time of one job attempt.",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Counter(
            "memoryd_jobs",
            "Job attempts by outcome: succeeded, failed, retried (arq runs it again), "
            "cancelled (worker stopping or timeout).",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.extraction_jobs = Counter(
            "memoryd_extraction_jobs",
            "Extraction jobs finished (succeeded, failed) or put off for a retry (retried).",
            ["outcome"],
            registry=self.registry,
        )
        self.extraction_decisions = Counter(
            "memoryd_extraction_decisions",
            "What extraction did with its candidates: created, updated, deleted, noop.",
            ["op"],
            registry=self.registry,
        )
        self.registry.register(PoolCollector(postgres))

    def watch_stores(self, loop: asyncio.AbstractEventLoop, read: StoreReader) -> None:
        """Serve the store gauges (queue depth, embed lag), read by `read` on
        `loop` at each scrape."""
        self.registry.register(StoreCollector(loop, read))


@dataclass(frozen=True)
class StoreGauges:
    queue_depth: int
    pending_embeddings: int
    oldest_pending: datetime | None


StoreReader = Callable[[], Coroutine[Any, Any, StoreGauges]]


class StoreCollector(Collector):
    """Queue depth and embed lag, queried on the worker's event loop when
    Prometheus scrapes (the endpoint runs in a thread of its own)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read: StoreReader) -> None:
        self._loop = loop
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        try:
            future = asyncio.run_coroutine_threadsafe(self._read(), self._loop)
            gauges = future.result(timeout=STORE_SCRAPE_TIMEOUT_S)
        except Exception as exc:  # a scrape must answer even when a store is down
            log.warning("metrics: store gauges unavailable: %s", exc)
            return []
        return self._families(gauges)

    @staticmethod
    def _families(gauges: StoreGauges | None) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "memoryd_job_queue_depth", "Jobs in the arq queue (ready and deferred)."
        )
        pending = GaugeMetricFamily(
            "memoryd_embed_pending_memories", "Live memories waiting for their embedding."
        )
        lag = GaugeMetricFamily(
            "memoryd_embed_lag_seconds",
            "Age of the oldest memory waiting for its embedding; 0 when none waits.",
        )
        if gauges is not None:
            depth.add_metric([], gauges.queue_depth)
            pending.add_metric([], gauges.pending_embeddings)
            oldest = gauges.oldest_pending
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            lag.add_metric([], max(age, 0.0))
        yield from (depth, pending, lag)


# -- both ----------------------------------------------------------------


class PoolCollector(Collector):
    """The Postgres pool's own counts (psycopg_pool get_stats), read at scrape."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        # Plain reads of the pool's counters and queue lengths: safe from the
        # endpoint's thread, and no await is needed.
        stats = self._pool.get_stats()
        connections = GaugeMetricFamily(
            "memoryd_postgres_pool_connections",
            "Connections of the Postgres pool: open (in use or idle) and idle.",
            labels=["state"],
        )
        connections.add_metric(["open"], stats.get("pool_size", 0))
        connections.add_metric(["idle"], stats.get("pool_available", 0))
        yield connections
        yield GaugeMetricFamily(
            "memoryd_postgres_pool_max_connections",
            "The most connections the pool opens (MEMORYD_POSTGRES_POOL_MAX).",
            value=stats.get("pool_max", 0),
        )
        yield GaugeMetricFamily(
            "memoryd_postgres_pool_waiting_requests",
            "Requests waiting for a connection right now.",
            value=stats.get("requests_waiting", 0),
        )
        yield CounterMetricFamily(
            "memoryd_postgres_pool_requests",
            "Connections handed out by the pool.",
            value=stats.get("requests_num", 0),
        )
        yield CounterMetricFamily(
            "memoryd_postgres_pool_wait_seconds",
            "Time requests spent waiting for a connection.",
            value=stats.get("requests_wait_ms", 0) / 1000,
        )


class MetricsEndpoint:
    """prometheus_client's HTTP server (GET /metrics) on a thread of its own."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.address = f"{host!s}:{port}"

    @classmethod
    def start(cls, listen: str, registry: CollectorRegistry) -> MetricsEndpoint:
        host, _, port = listen.rpartition(":")
        try:
            server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot serve metrics on {listen} ({exc.strerror}): set "
                "MEMORYD_METRICS_LISTEN / MEMORYD_WORKER_METRICS_LISTEN to a free host:port",
            ) from exc
        endpoint = cls(server, thread)
        log.info("metrics on http://%s/metrics", endpoint.address)
        return endpoint

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
