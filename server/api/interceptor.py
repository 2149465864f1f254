"""One interceptor for every unary call: request ids, error mapping, logs."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc
from grpc.aio import ServicerContext

from server import deadlines
from server.api.status import failure_for
from server.errors import InvalidArgument

log = logging.getLogger("memoryd.rpc")

REQUEST_ID_HEADER = "x-request-id"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

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
    servicer error."""

    def __init__(self, guards: Sequence[CallGuard] = ()) -> None:
        self._guards = tuple(guards)
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

        async def unary_unary(request: Any, context: ServicerContext[Any, Any]) -> Any:
            request_id = _request_id(context)
            request_id_var.set(request_id)
            # The stores bound their waits by what is left of it (server.deadlines).
            deadlines.set_from_remaining(context.time_remaining())
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if isinstance(request, _Undecodable):
                    raise InvalidArgument("request", request.reason)
                for guard in guards:
                    guard(method, request, context)
                return await behavior(request, context)
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
                if log.isEnabledFor(level):
                    log.log(
                        level,
                        "%s %s %.1fms [request_id=%s]",
                        method,
                        code.name,
                        (time.perf_counter() - started) * 1000,
                        request_id,
                    )

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class _Undecodable:
    """Stands for a request whose bytes do not parse, so that the caller gets
    INVALID_ARGUMENT from the interceptor (gRPC itself would answer INTERNAL)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def deserialize_or_mark(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, RecursionError...: all mean bad bytes
            return _Undecodable(
                f"is not a valid protobuf message for this method ({type(exc).__name__}); "
                "strings must be UTF-8 and messages nested at most 100 deep"
            )

    return deserialize_or_mark
