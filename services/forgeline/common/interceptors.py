"""Server interceptors: one error path (domain exceptions -> status codes) and bearer auth.

Every handler shape (unary/streaming in and out) is wrapped, so a servicer raises
`forgeline.client.exceptions` exceptions and never builds a status itself.
"""

from __future__ import annotations

import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from forgeline.client import exceptions
from forgeline.client.status import status_for

log = logging.getLogger(__name__)

OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, NotImplementedError):
        exc = exceptions.Unimplemented(f"{method} is not implemented by this server")
    if not isinstance(exc, exceptions.ForgelineError):
        log.exception("unhandled error in %s", method, exc_info=exc)
        exc_status = status_pb2.Status(
            code=code_pb2.INTERNAL,
            message=f"internal error in {method}: {type(exc).__name__} (see the server log)",
        )
    else:
        log.info("%s -> %s: %s", method, exc.code.value, exc.message)
        exc_status = status_for(exc)
    st = rpc_status.to_status(exc_status)
    await context.abort(st.code, st.details, st.trailing_metadata)


async def maybe_await(value: Any) -> Any:
    """`value`, awaited when it is awaitable (handlers may be sync or async)."""
    return await value if inspect.isawaitable(value) else value


async def iterate_results(result: Any) -> AsyncIterator[Any]:
    """The messages of a streaming handler's result, whether sync or async, iterator or not."""
    result = await maybe_await(result)
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        for item in result:
            yield item


Behaviour = Callable[[Any, grpc.aio.ServicerContext], Any]


def rewrap(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Behaviour], Behaviour],
    streaming: Callable[[Behaviour], Behaviour],
) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour replaced by `streaming(behaviour)` for methods that
    stream responses, else `unary(behaviour)`; its (de)serializers are kept.

    `unary` wraps a behaviour returning a response (or an awaitable of one), `streaming`
    one returning responses to iterate (see `iterate_results`).
    """
    if handler.response_streaming:
        inner = handler.stream_stream if handler.request_streaming else handler.unary_stream
        factory = (
            grpc.stream_stream_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_stream_rpc_method_handler
        )
        behaviour = streaming(inner)
    else:
        inner = handler.stream_unary if handler.request_streaming else handler.unary_unary
        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        behaviour = unary(inner)
    return factory(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _wrap_handler(
    handler: grpc.RpcMethodHandler,
    method: str,
    before: Callable[[grpc.aio.ServicerContext], Awaitable[None]] | None = None,
) -> grpc.RpcMethodHandler:
    """Returns `handler` with its behaviour wrapped: `before` runs first, errors are mapped."""

    async def prologue(context: grpc.aio.ServicerContext) -> None:
        if before is not None:
            await before(context)

    def streaming(inner: Behaviour) -> Behaviour:
        async def behaviour(request_or_iterator: Any, context: grpc.aio.ServicerContext):
            try:
                await prologue(context)
                async for item in iterate_results(inner(request_or_iterator, context)):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, method)

        return behaviour

    def unary(inner: Behaviour) -> Behaviour:
        async def behaviour(request_or_iterator: Any, context: grpc.aio.ServicerContext):
            try:
                await prologue(context)
                return await maybe_await(inner(request_or_iterator, context))
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, method)

        return behaviour

    return rewrap(handler, unary, streaming)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain exceptions raised by servicers to gRPC statuses with `google.rpc` details.

    Unknown exceptions become INTERNAL (logged with their traceback); `NotImplementedError`
    becomes UNIMPLEMENTED.
    """

    async def intercept_service(self, continuation, handler_call_details):
        """Wraps the handler of every method."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap_handler(handler, handler_call_details.method)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` on every call but health and reflection.

    The token is compared in constant time.
    """

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        """Lets open methods through; wraps the rest with a credential check."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(presented, self._expected):
            return handler

        async def deny(context: grpc.aio.ServicerContext) -> None:
            reason = "missing bearer token" if not presented else "invalid bearer token"
            raise exceptions.Unauthenticated(f"{reason} for {method}")

        return _wrap_handler(handler, method, before=deny)
