"""OpenTelemetry tracing, behind settings.otel_enabled.

A span per gRPC call (server) and per job (worker), each carrying the
request id; the call's trace context travels into the jobs it enqueues
(server.job_queue), so one trace shows an append and the extraction it
triggered. Off (the default), no OpenTelemetry module is imported and the
interceptor and job wrapper test a single `None`.

The tracer provider is memoryd's own, not OpenTelemetry's global one: it is
installed once per process by the entry point (`configure`), or by tests with
an in-memory exporter (`install`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from grpc.aio import ServicerContext
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span

    from server.settings import Settings

log = logging.getLogger(__name__)

# The W3C trace context headers: gRPC metadata in, job kwargs out.
_TRACE_HEADERS = ("traceparent", "tracestate")
REQUEST_ID_ATTRIBUTE = "memoryd.request_id"
_SHUTDOWN_TIMEOUT_S = 2.0


class RpcSpan:
    """The span of one call, current until finish()."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span, token: object) -> None:
        self._span = span
        self._token = token

    def finish(self, code: grpc.StatusCode) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            self._span.set_status(Status(StatusCode.ERROR, code.name))
        context.detach(self._token)  # type: ignore[arg-type]
        self._span.end()


class Tracing:
    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer("memoryd")
        self._propagator = TraceContextTextMapPropagator()

    def start_rpc(
        self, method: str, request_id: str, context: ServicerContext[Any, Any]
    ) -> RpcSpan:
        """Start the call's span, child of the caller's trace when its metadata
        carries one, and make it current (jobs enqueued by the call join it)."""
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        carrier = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if key in _TRACE_HEADERS and isinstance(value, str)
        }
        parent = self._propagator.extract(carrier) if carrier else None
        service, _, name = method.lstrip("/").rpartition("/")
        span = self._tracer.start_span(
            method.lstrip("/"),
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                REQUEST_ID_ATTRIBUTE: request_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return RpcSpan(span, token)

    def job_span(
        self, job: str, carrier: Mapping[str, str], *, request_id: str, job_id: str, job_try: int
    ) -> AbstractContextManager[Span]:
        """The span of one job attempt, child of the enqueuing call's span."""
        from opentelemetry import trace

        parent = self._propagator.extract(dict(carrier)) if carrier else None
        return self._tracer.start_as_current_span(
            f"job {job}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "arq",
                "messaging.operation": "process",
                "memoryd.job": job,
                "memoryd.job_id": job_id,
                "memoryd.job_try": job_try,
                REQUEST_ID_ATTRIBUTE: request_id,
            },
        )

    def inject(self, carrier: dict[str, str]) -> None:
        """Add the current span's trace context to `carrier`."""
        self._propagator.inject(carrier)

    def shutdown(self, timeout_s: float = _SHUTDOWN_TIMEOUT_S) -> None:
        """Export what is buffered, waiting at most `timeout_s`: with the
        collector unreachable the exporter retries for ~10 s, and a stopping
        process must not wait that long."""
        flush = threading.Thread(target=self.provider.shutdown, daemon=True)
        flush.start()
        flush.join(timeout_s)


_active: Tracing | None = None


def active() -> Tracing | None:
    """The process's tracing, or None when it is off."""
    return _active


def install(processor: SpanProcessor, *, service_name: str) -> Tracing:
    """Trace this process, exporting spans through `processor`."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    global _active
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over the default name.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    _active = Tracing(provider)
    return _active


def uninstall() -> None:
    """Flush and stop tracing (end of the process, or of a test)."""
    global _active
    if _active is not None:
        _active.shutdown()
        _active = None


def configure(settings: Settings, *, command: str) -> None:
    """Start tracing for a memoryd process when settings.otel_enabled: spans go
    in batches to the OTLP/gRPC endpoint the standard OTEL_EXPORTER_OTLP_*
    variables name (default localhost:4317)."""
    if not settings.otel_enabled:
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    install(BatchSpanProcessor(OTLPSpanExporter()), service_name=f"memoryd-{command}")
    log.info(
        "tracing on: OTLP to %s",
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "localhost:4317",
    )
