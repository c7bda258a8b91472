"""HTTP errors of the gateway, in OpenAI's `{"error": {message, type, param, code}}` shape.

`ApiError` is what the gateway's code raises and `error_response` answers it; `from_domain`
maps the inference service's failures (domain exceptions, as the SDK raises them) to the
HTTP status a client of the OpenAI API expects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi.responses import JSONResponse

from forgeline.client import exceptions
from forgeline.gateway.protocol import ErrorInfo, ErrorResponse

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error answered in OpenAI's error shape.

    Args:
        status: HTTP status code.
        message: What went wrong and, where possible, what to change.
        type: OpenAI's error type (`invalid_request_error`, `server_error`, ...).
        param: The request field at fault, if any.
        code: A machine-readable code (`model_not_found`, `rate_limit_exceeded`, ...).
        headers: Extra response headers (`Retry-After`, ...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> ErrorResponse:
        """The response body."""
        return ErrorResponse(
            error=ErrorInfo(message=self.message, type=self.type, param=self.param, code=self.code)
        )


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON response answering `error`, with its headers and any extra `headers`."""
    return JSONResponse(
        error.body().model_dump(),
        status_code=error.status,
        headers={**error.headers, **(headers or {})},
    )


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 about `param`."""
    return ApiError(400, message, "invalid_request_error", param, code)


def model_not_found(model: str) -> ApiError:
    """The 404 for a model that is not served, or not open to this key."""
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model",
        "model_not_found",
    )


def _param(field: str) -> str:
    # Contract field names -> the OpenAI request field: "sampling.top_p" -> "top_p".
    if field.startswith("sampling."):
        return field.split(".", 1)[1]
    return field.split(".")[0] if field else field


def from_domain(exc: exceptions.ForgelineError, model: str = "") -> ApiError:
    """Maps an inference-service failure to the HTTP error a client should see.

    The service refusing the gateway's own token is the gateway's fault, so the client
    gets a 500 and the details go to the log; failures without a domain meaning
    (`Internal`, `Cancelled`, ...) are 500s in the same shape.
    """
    if isinstance(exc, exceptions.NotFound):
        return model_not_found(model) if model else ApiError(404, exc.message)
    if isinstance(exc, exceptions.InvalidArgument):
        field = exc.violations[0].field if exc.violations else ""
        return bad_request(exc.message, _param(field) or None)
    if isinstance(exc, exceptions.FailedPrecondition):
        return bad_request(exc.message, code=exc.type.lower() or None)
    if isinstance(exc, exceptions.ResourceExhausted):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else {}
        return ApiError(429, exc.message, "requests", None, "rate_limit_exceeded", headers)
    if isinstance(exc, exceptions.Unavailable):
        return ApiError(503, exc.message, "server_error", None, "engine_unavailable")
    if isinstance(exc, exceptions.DeadlineExceeded):
        return ApiError(504, "the inference service did not answer in time", "server_error")
    if isinstance(exc, exceptions.Unauthenticated):
        log.error("the inference service refused the gateway's token: %s", exc)
        return ApiError(500, "the gateway is misconfigured", "server_error")
    if isinstance(exc, exceptions.Internal | exceptions.Cancelled):
        log.error("the inference service failed: %s: %s", type(exc).__name__, exc.message)
    return ApiError(500, f"the inference service failed: {exc.message}", "server_error")
