"""ASGI middleware run on every HTTP request: request ids and the body-size limit.

Every response carries `X-Request-Id`: the client's when it sent a sane one, else a new
one. Bodies over the limit are answered 413 before the app parses them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from forgeline.gateway.api_errors import ApiError, error_response

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


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
        length = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER.encode():
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

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
