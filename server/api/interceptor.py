"""One interceptor for every unary call: request ids, error mapping, logs."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import grpc
from grpc.aio import ServicerContext

from server import deadlines
from server.api.status import Failure, failure_for
from server.errors import InvalidArgument
from server.request_context import request_id_var

if TYPE_CHECKING:
    from server.metrics import RpcMetrics
    from server.tracing import Tracing

__all__ = [
    "REQUEST_ID_HEADER",
    "CallGuard",
    "RequestInterceptor",
    "StreamGuard",
    "encoded_response",
    "request_id_var",
]

log = logging.getLogger("memoryd.rpc")

REQUEST_ID_HEADER = "x-request-id"

# Probes call these every few seconds: log them only at DEBUG.
_QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

T = TypeVar("T")

Behavior = Callable[[Any, ServicerContext[Any, Any]], Awaitable[Any]]
# An async generator, or a coroutine that sends with context.write (health Watch).
StreamBehavior = Callable[[Any, ServicerContext[Any, Any]], Any]
# Runs before the servicer with the method name, the decoded request and the
# call; refuses the call by raising a MemorydError (auth, rate limits). Sync on
# purpose: a guard must not add an await to every call.
CallGuard = Callable[[str, Any, ServicerContext[Any, Any]], None]
# The same for streaming calls (health Watch, reflection), before the first
# message: it sees the method and the call's metadata, not the requests.
StreamGuard = Callable[[str, ServicerContext[Any, Any]], None]

if TYPE_CHECKING:  # the stubs make these generic; grpc's classes are not
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


async def _relay(result: Any) -> AsyncIterator[Any]:
    """The responses of a streaming handler of either style."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result


class EncodedResponse:
    """A response already in its wire form; the interceptor sends it as is."""

    __slots__ = ("wire",)

    def __init__(self, wire: bytes) -> None:
        self.wire = wire


def encoded_response(response_type: type[T], wire: bytes) -> T:
    """Return `wire` (a `response_type` encoding) from a servicer method typed
    to return `response_type`, skipping decode and re-encode. Only servers
    built with RequestInterceptor (server.api.app) know how to send it."""
    return cast(T, EncodedResponse(wire))


def _passing_encoded(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    if serialize is None:
        return None

    def serialize_response(response: Any) -> bytes:
        if type(response) is EncodedResponse:
            return response.wire
        return serialize(response)

    return serialize_response


async def _abort(context: ServicerContext[Any, Any], failure: Failure, request_id: str) -> NoReturn:
    """End the call with `failure`'s status, its details and the request id."""
    await context.abort(
        failure.code,
        failure.message,
        trailing_metadata=(
            ("grpc-status-details-bin", failure.details()),
            (REQUEST_ID_HEADER, request_id),
        ),
    )


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
    servicer error. `stream_guards` run before streaming handlers, which are
    otherwise passed through as they are. With `metrics`, each unary call is
    counted by method and status and timed; with `tracing`, each is a span
    (server.tracing)."""

    def __init__(
        self,
        guards: Sequence[CallGuard] = (),
        stream_guards: Sequence[StreamGuard] = (),
        *,
        metrics: RpcMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._guards = tuple(guards)
        self._stream_guards = tuple(stream_guards)
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
        if handler is None:
            return handler
        if handler.unary_unary is None:
            wrapped = self._wrap_stream(method, handler)
        else:
            wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap_stream(self, method: str, handler: Handler) -> Handler:
        guards = self._stream_guards
        if not guards:
            return handler

        async def check(context: ServicerContext[Any, Any]) -> None:
            try:
                for guard in guards:
                    guard(method, context)
            except Exception as exc:
                request_id = _request_id(context)
                failure = failure_for(exc, request_id=request_id)
                log.info("%s %s [request_id=%s]", method, failure.code.name, request_id)
                await _abort(context, failure, request_id)

        def guarded_stream(behavior: StreamBehavior) -> StreamBehavior:
            # One body for both streaming kinds: the first argument is a
            # request or a request iterator, passed on as it came.
            async def guarded(
                request: Any, context: ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                await check(context)
                async for response in _relay(behavior(request, context)):
                    yield response

            return guarded

        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                guarded_stream(cast(StreamBehavior, handler.stream_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                guarded_stream(cast(StreamBehavior, handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        stream_unary = cast(Behavior, handler.stream_unary)

        async def guarded_stream_unary(requests: Any, context: ServicerContext[Any, Any]) -> Any:
            await check(context)
            return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            guarded_stream_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

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
            # The stores bound their waits by what is left of it (server.deadlines).
            deadlines.set_from_remaining(context.time_remaining())
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                # Guards first: a caller without a token learns nothing else.
                for guard in guards:
                    guard(method, request, context)
                if isinstance(request, _Undecodable):
                    raise InvalidArgument("request", request.reason)
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
                await _abort(context, failure, request_id)
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
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=_passing_encoded(handler.response_serializer),
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
