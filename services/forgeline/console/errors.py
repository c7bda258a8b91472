"""The console API's one error shape: `{"error": {"message", "code", "violations"}}`.

SDK exceptions map to HTTP statuses here (NotFound 404, InvalidArgument 400 with each
field violation, FailedPrecondition and AlreadyExists 409, Unavailable 503, ...), so the
pages can show a refused promotion's reason or put an invalid field's reason beside it.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from forgeline.client import exceptions
from forgeline.client.exceptions import ErrorCode

STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.FAILED_PRECONDITION: 409,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.UNAUTHENTICATED: 502,  # the console's own service token was refused
    ErrorCode.PERMISSION_DENIED: 502,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}


class ConsoleError(Exception):
    """An error the console itself answers with.

    Args:
        status: HTTP status.
        message: What went wrong, for people.
        code: A stable machine-readable code.
        field: The request field at fault, when one is.
        violations: Every field at fault, each `{"field", "description"}`.
    """

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "",
        field: str = "",
        violations: list[dict] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or "invalid_request"
        one = [{"field": field, "description": message}] if field else []
        self.violations = violations or one


def error_body(message: str, code: str, violations: list[dict] | None = None) -> dict:
    """The JSON body of an error answer."""
    return {"error": {"message": message, "code": code, "violations": violations or []}}


def console_error_response(exc: ConsoleError) -> JSONResponse:
    """The answer to a `ConsoleError`."""
    return JSONResponse(error_body(exc.message, exc.code, exc.violations), exc.status)


def sdk_error_response(exc: exceptions.ForgelineError) -> JSONResponse:
    """The answer to an SDK exception: its status, message and field violations."""
    violations = [
        {"field": v.field, "description": v.description}
        for v in getattr(exc, "violations", None) or []
    ]
    code = exc.code.value if hasattr(exc.code, "value") else str(exc.code)
    return JSONResponse(
        error_body(exc.message, str(code).lower(), violations), STATUS.get(exc.code, 500)
    )
