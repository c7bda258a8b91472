"""OpenTelemetry traces: exported by OTLP only when configured, no-ops otherwise.

`configure_tracing(name)` installs the SDK once per process when the standard variables ask
for an exporter: `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set
(OTLP, over `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`: http/protobuf by default, or grpc), or
`OTEL_TRACES_EXPORTER` set to `otlp` or `console`. `OTEL_TRACES_EXPORTER=none` or
`OTEL_SDK_DISABLED=true` keep it off. Unlike the SDK's own default, nothing is exported
when none of them is set, and then every span is the API's no-op span. The resource's
`service.name` is `forgeline-<name>`; sampling follows `OTEL_TRACES_SAMPLER`.

The helpers carry a trace across what gRPC metadata does not: into a job that runs later
(`current_carrier` at submit, `job_span` when it runs) and around a stream of events
(`traced_events`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

T = TypeVar("T")

tracer = trace.get_tracer("forgeline")

EXPORTERS = ("otlp", "console", "none")
# How long a Ray task waits at its end for its spans to be sent (a collector may be down).
FLUSH_MILLIS = 5000
PROTOCOLS = ("http/protobuf", "grpc")
_configured = threading.Lock()
_done = False


def _exporter_name(env: Mapping[str, str]) -> str:
    """Which exporter the environment asks for: 'otlp', 'console' or 'none'.

    Raises:
        ValueError: OTEL_TRACES_EXPORTER names an exporter not supported here.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none"
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return "otlp" if endpoint else "none"
    if len(names) > 1 or names[0] not in EXPORTERS:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER must be one of {', '.join(EXPORTERS)}, "
            f"got {env['OTEL_TRACES_EXPORTER']!r}"
        )
    return names[0]


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    """The OTLP span exporter for the configured protocol (it reads its endpoint itself).

    Raises:
        ValueError: the protocol is unknown, or grpc without its exporter installed.
    """
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ValueError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc; "
                "install it or use http/protobuf"
            ) from None
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def configure_tracing(name: str, env: Mapping[str, str] = os.environ) -> bool:
    """Installs the tracing SDK for this process when the environment asks for an exporter.

    Only the first call of a process does anything (a tracer provider is set once).

    Args:
        name: What this process is: a service name, `cli`, `ray-worker`.
        env: Where the OTEL_* variables are read.

    Returns:
        Whether spans are now exported.

    Raises:
        ValueError: an OTEL_* variable asks for something unsupported (the message names it).
    """
    global _done
    with _configured:
        if _done:
            return isinstance(trace.get_tracer_provider(), _sdk_provider_type())
        exporter_name = _exporter_name(env)
        _done = True
        if exporter_name == "none":
            return False
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        exporter = ConsoleSpanExporter() if exporter_name == "console" else _otlp_exporter(env)
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"forgeline-{name}"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        log.info("exporting traces (%s) as forgeline-%s", exporter_name, name)
        return True


def _sdk_provider_type() -> type:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, ...); empty outside a trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str]) -> context.Context:
    """The context that `carrier` (W3C headers, or gRPC metadata as a mapping) continues."""
    return propagate.extract(carrier)


def trace_id() -> str:
    """The current span's trace id in hex; empty when no span is recording."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def end_span(span: Span, error: BaseException | None = None, status: str = "") -> None:
    """Ends `span`, marked as an error when `error` is given or `status` names one."""
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, status or type(error).__name__))
    elif status:
        span.set_status(Status(StatusCode.ERROR, status))
    span.end()


def traced_events(
    events: AsyncIterator[T], name: str, attributes: Mapping[str, Any]
) -> AsyncIterator[T]:
    """`events`, yielded inside an INTERNAL span named `name` (a child of the current one)
    that starts now; `events` itself when no span records, so untraced streams pay nothing.

    The span records when the first event arrived and how many came; closing the returned
    iterator closes `events`.
    """
    span = tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=dict(attributes))
    if not span.is_recording():
        return events
    return _in_span(events, span)


async def _in_span(events: AsyncIterator[T], span: Span) -> AsyncIterator[T]:
    count = 0
    try:
        async with aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if not count:
                    span.add_event("first event")
                count += 1
                yield event
    except (GeneratorExit, asyncio.CancelledError):
        span.set_attribute("forgeline.events", count)
        end_span(span, status="CANCELLED")
        raise
    except BaseException as exc:
        span.set_attribute("forgeline.events", count)
        end_span(span, exc)
        raise
    span.set_attribute("forgeline.events", count)
    span.end()


def ray_task(fn: Callable[..., T], name: str) -> Callable[..., T]:
    """`fn`, to run as a Ray task in a span continuing the current trace on its worker.

    The submitting side records the launch in a span of its own (`launch_span`). Outside a
    trace `fn` itself is returned, so untraced runs are submitted exactly as before. On the
    worker the span is exported when the worker's environment configures tracing.
    """
    carrier = current_carrier()
    if not carrier:
        return fn

    def traced(*args: Any, **kwargs: Any) -> T:
        # Imported on the worker: the closure carries only `fn`, the carrier and the name.
        from forgeline.common.tracing import run_in_span

        return run_in_span(carrier, name, functools.partial(fn, **kwargs), *args)

    # Ray names tasks after the function; the qualified name stays this module's, so that
    # the wrapper (not `fn`) is what gets pickled.
    traced.__name__ = getattr(fn, "__name__", name)
    return traced


def run_in_span(carrier: Mapping[str, str], name: str, fn: Callable[..., T], *args: Any) -> T:
    """Runs `fn(*args)` on a Ray worker in a span continuing `carrier`'s trace; the span is
    flushed before returning (the worker may be ended right after)."""
    configure_tracing("ray-worker")
    with tracer.start_as_current_span(name, context=extract(carrier)):
        try:
            return fn(*args)
        finally:
            flush = getattr(trace.get_tracer_provider(), "force_flush", None)
            if flush is not None:
                flush(FLUSH_MILLIS)


def launch_span(name: str, **attributes: Any) -> Any:
    """A span (context manager) around submitting work to Ray, a child of the current one."""
    return tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes)
