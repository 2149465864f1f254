"""One interceptor for every unary call: request ids, error mapping, logs."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc
from grpc.aio import ServicerContext

from server.api.status import failure_for
from server.request_context import request_id_var

if TYPE_CHECKING:
    from server.metrics import RpcMetrics
    from server.tracing import Tracing

__all__ = ["REQUEST_ID_HEADER", "CallGuard", "RequestInterceptor", "request_id_var"]

log = logging.getLogger("memoryd.rpc")

REQUEST_ID_HEADER = "x-request-id"

# Probes call these every few seconds: log them only at DEBUG.
_QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Behavior = Callable[[Any, ServicerContext[Any, Any]], Awaitable[Any]]
# Runs before the servicer with the method name, the decoded request and the
# call; refuses the call by raising a MemorydError (auth, rate limits). Sync on
# purpose: a guard must not add an await to every call.
CallGuard = Callable[[str, Any, ServicerContext[Any, Any]], None]

if TYPE_CHECKING:  # the stubs make these generic; grpc's classes are not
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


def _request_id(context: ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


class RequestInterceptor(_Interceptor):
    """Gives each call a request id (from x-request-id metadata or new), maps
    raised errors to statuses through server.api.status, and logs one line
    per call with method, status, duration and request id. `guards` run in
    order before the servicer; what they raise is mapped and logged like any
    servicer error. With `metrics`, each call is counted by method and status
    and timed; with `tracing`, each call is a span (server.tracing)."""

    def __init__(
        self,
        guards: Sequence[CallGuard] = (),
        *,
        metrics: RpcMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._guards = tuple(guards)
        self._metrics = metrics
        self._tracing = tracing
        # One wrapped handler per method, built on its first call.
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        self._wrapped[method] = wrapped = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: Handler) -> Handler:
        level = logging.DEBUG if method.startswith(_QUIET_PREFIXES) else logging.INFO
        # grpc.aio hands coroutine functions here; the stubs predate aio.
        behavior = cast(Behavior, handler.unary_unary)
        guards = self._guards
        # Bound here, once per method: a call then costs an observe and an inc.
        metrics = None if self._metrics is None else self._metrics.for_method(method)
        tracing = self._tracing

        async def unary_unary(request: Any, context: ServicerContext[Any, Any]) -> Any:
            request_id = _request_id(context)
            request_id_var.set(request_id)
            span = None if tracing is None else tracing.start_rpc(method, request_id, context)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                for guard in guards:
                    guard(method, request, context)
                return await behavior(request, context)
            except asyncio.CancelledError:
                # The caller went away (cancelled, or its deadline passed).
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise  # already a status, set by grpc itself
                failure = failure_for(exc, request_id=request_id)
                code = failure.code
                if not failure.expected:
                    log.exception("%s failed [request_id=%s]", method, request_id)
                await context.abort(
                    failure.code,
                    failure.message,
                    trailing_metadata=(
                        ("grpc-status-details-bin", failure.details()),
                        (REQUEST_ID_HEADER, request_id),
                    ),
                )
            finally:
                elapsed = time.perf_counter() - started
                if metrics is not None:
                    metrics.record(code, elapsed)
                if span is not None:
                    span.finish(code)
                if log.isEnabledFor(level):
                    duration_ms = round(elapsed * 1000, 3)
                    log.log(
                        level,
                        "%s %s %.1fms [request_id=%s]",
                        method,
                        code.name,
                        duration_ms,
                        request_id,
                        # The fields of the JSON log line (server.logs).
                        extra={"method": method, "status": code.name, "duration_ms": duration_ms},
                    )

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
