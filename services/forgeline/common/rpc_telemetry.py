"""The server side of every call's telemetry: metrics, a SERVER span, and a request id.

`TelemetryInterceptor` is the outermost interceptor, so what it sees is what the caller
gets: a call refused by the auth check counts as UNAUTHENTICATED, a domain error with the
code the error interceptor mapped it to. For each call it

- counts it (started, handled by status code, in flight) and times it, streams until their
  last message (`forgeline.common.metrics.ServiceMetrics`);
- runs it in a SERVER span that continues the trace in the call's metadata (`traceparent`);
- sets the request id the call's logs and outgoing calls carry: the caller's `x-request-id`
  when it sent a sane one, else a new one.

grpc.aio runs each call in a task of its own, so what is set in the context here ends with
the call's task and is never reset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from forgeline.client import telemetry
from forgeline.client.telemetry import REQUEST_ID_KEY, accepted_request_id, split_method
from forgeline.common import logs
from forgeline.common.interceptors import Behaviour, iterate_results, maybe_await, rewrap
from forgeline.common.metrics import ServiceMetrics
from forgeline.common.tracing import end_span, extract, tracer


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


class _Call:
    """The telemetry of one call from its start to its end."""

    def __init__(self, metrics: ServiceMetrics, service_name: str, method: str, metadata: Any):
        service, name = split_method(method)
        self.labels = (service, name)
        self.metrics = metrics
        self.started = time.perf_counter()
        carrier = {k: _text(v) for k, v in metadata or ()}
        rid = accepted_request_id(carrier.get(REQUEST_ID_KEY, ""))
        telemetry.request_id.set(rid)
        logs.service.set(service_name)
        self.span = tracer.start_span(
            f"{service}/{name}",
            context=extract(carrier),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "forgeline.request_id": rid,
            },
        )
        otel_context.attach(trace.set_span_in_context(self.span))
        metrics.started.labels(*self.labels).inc()
        metrics.in_flight.labels(*self.labels).inc()

    def end(self, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
        """Records how the call ended."""
        code = _code(context, error)
        m = self.metrics
        m.in_flight.labels(*self.labels).dec()
        m.handled.labels(*self.labels, code.name).inc()
        m.duration.labels(*self.labels).observe(time.perf_counter() - self.started)
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        status = "" if code is grpc.StatusCode.OK else code.name
        unexpected = error if not isinstance(error, _EXPECTED) else None
        end_span(self.span, unexpected, status)


# How a call ends other than by returning: aborted with a status, or cancelled.
_EXPECTED = (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit)


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN if error is not None else grpc.StatusCode.OK


def _wrap(handler: grpc.RpcMethodHandler, start: Callable[[], _Call]) -> grpc.RpcMethodHandler:
    def streaming(inner: Behaviour) -> Behaviour:
        async def behaviour(request_or_iterator: Any, context: grpc.aio.ServicerContext):
            call = start()
            error: BaseException | None = None
            try:
                async for item in iterate_results(inner(request_or_iterator, context)):
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                call.end(context, error)

        return behaviour

    def unary(inner: Behaviour) -> Behaviour:
        async def behaviour(request_or_iterator: Any, context: grpc.aio.ServicerContext):
            call = start()
            error: BaseException | None = None
            try:
                return await maybe_await(inner(request_or_iterator, context))
            except BaseException as exc:
                error = exc
                raise
            finally:
                call.end(context, error)

        return behaviour

    return rewrap(handler, unary, streaming)


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Metrics, a SERVER span and a request id for every call (see the module docstring).

    Args:
        metrics: The server's metrics.
        service_name: The Forgeline service (`registry`, ...), for log lines.
    """

    def __init__(self, metrics: ServiceMetrics, service_name: str):
        self.metrics = metrics
        self.service_name = service_name

    async def intercept_service(self, continuation, handler_call_details):
        """Wraps the handler of every method."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata

        def start() -> _Call:
            return _Call(self.metrics, self.service_name, method, metadata)

        return _wrap(handler, start)
