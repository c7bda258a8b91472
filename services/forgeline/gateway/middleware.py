"""ASGI middleware run on every HTTP request: request ids, the body-size limit, the
request's span and its access line.

Every response carries `X-Request-Id`: the client's when it sent a sane one, else a new
one; the gateway's log lines and its calls to the inference service carry it too. Bodies
over the limit are answered 413 before the app parses them. Each request is a SERVER span
(continuing a `traceparent` the client sent) and ends with one access line: method, path,
status, duration, model and the name of the caller's key (`note_caller`), never the key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request
from opentelemetry.trace import SpanKind, Status, StatusCode

from forgeline.client import telemetry
from forgeline.common import logs
from forgeline.common.tracing import extract, tracer
from forgeline.gateway.api_errors import ApiError, error_response

REQUEST_ID_HEADER = telemetry.REQUEST_ID_KEY
_TRACE_HEADERS = (b"traceparent", b"tracestate", b"baggage")

access_log = logging.getLogger("forgeline.gateway.access")


def note_caller(request: Request, key_name: str, model: str | None = None) -> None:
    """Names the caller's key (and the model asked for) in the request's access line."""
    request.state.key_name = key_name
    if model is not None:
        request.state.model = model


class RequestContext:
    """ASGI middleware: request ids and the body-size limit, for every HTTP request.

    The request id is stored as ``request.state.request_id``. A body announced larger
    than the limit is refused before it is read; a chunked body is counted as it arrives
    and refused once it passes the limit.

    Args:
        app: The ASGI app to wrap.
        max_body_bytes: Largest request body accepted.
    """

    def __init__(self, app: Any, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Handles one ASGI call.

        Raises:
            ApiError: 413 once a chunked body passes the limit.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER.encode():
                request_id = value.decode("latin-1")
        request_id = telemetry.accepted_request_id(request_id)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (REQUEST_ID_HEADER.encode(), request_id.encode())
        status = 500  # unless a response starts

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        telemetry.request_id.set(request_id)  # each request runs in a task of its own
        logs.service.set("gateway")
        carrier = {
            k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS
        }
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        with tracer.start_as_current_span(
            f"{method} {path}",
            context=extract(carrier),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "forgeline.request_id": request_id,
            },
        ) as span:
            try:
                await self._limited(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                if route is not None and hasattr(route, "path"):
                    span.update_name(f"{method} {route.path}")
                    span.set_attribute("http.route", route.path)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                _log_access(method, path, status, time.perf_counter() - started, state)

    async def _limited(self, scope: dict, receive: Callable, send_with_id: Callable) -> None:
        """Passes the request on, refusing a body over the limit.

        Raises:
            ApiError: 413 once a chunked body passes the limit.
        """
        length = dict(scope["headers"]).get(b"content-length")

        too_large = ApiError(
            413,
            f"the request body exceeds the gateway's limit of {self.max_body_bytes} bytes",
            code="request_too_large",
        )
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await error_response(too_large)(scope, receive, send_with_id)
            return
        received = 0

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise too_large
            return message

        await self.app(scope, counted_receive, send_with_id)


def _log_access(method: str, path: str, status: int, seconds: float, state: dict) -> None:
    """One access line for a finished request (structured fields for JSON logs)."""
    model, key = state.get("model", ""), state.get("key_name", "")
    access_log.info(
        "%s %s %d %.1f ms model=%r key=%s",
        method,
        path,
        status,
        seconds * 1000,
        model,
        key or "-",
        extra={
            "fields": {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "model": model,
                "key": key,
            }
        },
    )
