"""What every outgoing call carries: the W3C trace context and the caller's request id.

A call made inside a traced operation (a gateway request, a job's run, a CLI command) is a
CLIENT span whose context travels in the call's metadata (`traceparent`, `tracestate`), so
the service's span becomes its child. A request id set in `request_id` (the services set it
for the call or job they are working on) is sent as `x-request-id`, so one request is
found in the logs of every service it passed.

Only the OpenTelemetry API is used here: without a configured SDK (the process never called
`forgeline.common.tracing.configure_tracing`) spans are no-ops that record nothing, and a
call costs a context lookup more.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from contextvars import ContextVar

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

REQUEST_ID_KEY = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")

# The request (or job) the current task works for; sent on every call it makes.
request_id: ContextVar[str] = ContextVar("forgeline_request_id", default="")

_tracer = trace.get_tracer("forgeline.client")

Metadata = Sequence[tuple[str, str | bytes]]


def accepted_request_id(sent: str) -> str:
    """The request id a caller sent, when it is sane (1 to 128 printable ASCII characters),
    else a new one."""
    return sent if _SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def split_method(method: str) -> tuple[str, str]:
    """('forgeline.v1.RegistryService', 'GetModel') of '/forgeline.v1.RegistryService/GetModel'."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def start_call_span(method: str) -> Span:
    """Starts the CLIENT span of a call to `method` (a full gRPC method name)."""
    service, name = split_method(method)
    return _tracer.start_span(
        f"{service}/{name}",
        kind=SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )


def call_metadata(span: Span, metadata: Metadata = ()) -> list[tuple[str, str | bytes]]:
    """`metadata` plus the trace context of `span` and the current request id (unless the
    metadata already names one)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    out = list(metadata)
    out.extend(carrier.items())
    rid = request_id.get()
    if rid and not any(k == REQUEST_ID_KEY for k, _ in metadata):
        out.append((REQUEST_ID_KEY, rid))
    return out


def end_call_span(span: Span, code: grpc.StatusCode) -> None:
    """Ends a call's span with the status the call ended with."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def end_span_when_done(span: Span, call: grpc.aio.Call) -> None:
    """Ends `span` once the asyncio `call` has ended (nothing to do for a no-op span)."""
    if not span.is_recording():
        return

    async def finish() -> None:
        end_call_span(span, await call.code())

    def done(_call: grpc.aio.Call) -> None:
        task = asyncio.ensure_future(finish())
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    call.add_done_callback(done)


_pending: set[asyncio.Future] = set()


class TracingInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Makes every call of a blocking channel a CLIENT span and sends its trace context and
    the current request id."""

    def _call(self, continuation, details, request):
        # Imported here: channel.py imports this module for the interceptor.
        from forgeline.client.channel import with_metadata

        span = start_call_span(details.method)
        metadata = call_metadata(span, details.metadata or ())
        call = continuation(with_metadata(details, metadata), request)
        if span.is_recording():
            call.add_done_callback(lambda done: end_call_span(span, done.code()))
        return call

    def intercept_unary_unary(self, continuation, details, request):
        return self._call(continuation, details, request)

    def intercept_unary_stream(self, continuation, details, request):
        return self._call(continuation, details, request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return self._call(continuation, details, request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return self._call(continuation, details, request_iterator)
