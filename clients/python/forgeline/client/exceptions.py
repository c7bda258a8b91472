"""Domain exceptions: raised by service cores, rebuilt from the wire by the SDK.

The cores never import grpc: they raise these, and the services' one error interceptor
maps each to its gRPC status code with `google.rpc` error details
(`forgeline.client.status.status_for`). Clients get the same classes back from
`forgeline.client.status.from_rpc_error`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class ErrorCode(enum.Enum):
    """The gRPC status a domain error maps to, by name (no grpc import here)."""

    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    CANCELLED = "CANCELLED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class ForgelineError(Exception):
    """Base of every domain error. `code` says which status it becomes on the wire."""

    code: ErrorCode = ErrorCode.FAILED_PRECONDITION

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ForgelineError):
    """A named thing does not exist.

    Args:
        resource_type: What kind of thing, e.g. ``"model"``.
        name: Its name as the caller gave it.
    """

    code = ErrorCode.NOT_FOUND

    def __init__(self, resource_type: str, name: str, message: str | None = None):
        super().__init__(message or f"{resource_type} {name!r} not found")
        self.resource_type = resource_type
        self.name = name


class AlreadyExists(ForgelineError):
    """Creating something that already exists."""

    code = ErrorCode.ALREADY_EXISTS

    def __init__(self, resource_type: str, name: str, message: str | None = None):
        super().__init__(message or f"{resource_type} {name!r} already exists")
        self.resource_type = resource_type
        self.name = name


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field of a request (`google.rpc.BadRequest.FieldViolation`)."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class InvalidArgument(ForgelineError):
    """The request is malformed. Carries every problem found, each naming its field.

    Construct with one field and reason, or with a list of violations to report them all
    at once (`InvalidArgument.collect`).
    """

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str):
        self.violations: list[FieldViolation] = [FieldViolation(field, description)]
        super().__init__(str(self.violations[0]))

    @classmethod
    def from_violations(cls, violations: list[FieldViolation]) -> InvalidArgument:
        """Builds one error from several violations (at least one)."""
        if not violations:
            raise ValueError("from_violations needs at least one violation")
        err = cls(violations[0].field, violations[0].description)
        err.violations = list(violations)
        err.message = "; ".join(str(v) for v in violations)
        err.args = (err.message,)
        return err


class Violations:
    """Collects field violations during validation, then raises them together.

    The one collector of field problems: validators add to it, a report or plan holds it,
    and `raise_if_any` is where the collected problems become one `InvalidArgument`.

    Args:
        items: Violations to start with (another collector's, for instance).

    Example:
        >>> v = Violations()
        >>> v.check(rank > 0, "tuner.rank", "must be positive")
        >>> v.raise_if_any()
    """

    def __init__(self, items: Iterable[FieldViolation] = ()) -> None:
        self.items: list[FieldViolation] = list(items)

    def add(self, field: str, description: str) -> None:
        """Records a problem with `field`."""
        self.items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        """Records a problem unless `ok`; returns `ok`."""
        if not ok:
            self.add(field, description)
        return ok

    def extend(self, violations: Iterable[FieldViolation]) -> None:
        """Records every violation of `violations` (a list, or another collector)."""
        self.items.extend(violations)

    def fields(self) -> list[str]:
        """The field of every recorded violation, in the order they were recorded."""
        return [v.field for v in self.items]

    def __iter__(self) -> Iterator[FieldViolation]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __repr__(self) -> str:
        return f"Violations({self.items!r})"

    def raise_if_any(self) -> None:
        """Raises:
        InvalidArgument: with every recorded violation, if any.
        """
        if self.items:
            raise InvalidArgument.from_violations(self.items)


class FailedPrecondition(ForgelineError):
    """The request is valid but the system is not in a state to do it.

    Args:
        message: What is wrong and what to do about it.
        subject: What the precondition is about (`google.rpc.PreconditionFailure`).
        type: A short machine-readable kind, e.g. ``"VERSION_STATE"``.
    """

    code = ErrorCode.FAILED_PRECONDITION

    def __init__(self, message: str, subject: str = "", type: str = ""):
        super().__init__(message)
        self.subject = subject
        self.type = type


class ResourceExhausted(ForgelineError):
    """A quota or capacity limit was hit; `retry_after` seconds may help."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Unauthenticated(ForgelineError):
    """Missing or wrong credentials."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ForgelineError):
    """Credentials are valid but not for this."""

    code = ErrorCode.PERMISSION_DENIED


class Aborted(ForgelineError):
    """A concurrent change won; retrying the whole operation may succeed."""

    code = ErrorCode.ABORTED


class Unavailable(ForgelineError):
    """A dependency (engine, registry, Ray) is not reachable right now."""

    code = ErrorCode.UNAVAILABLE


class Unimplemented(ForgelineError):
    """The operation is part of the contract but not provided by this server."""

    code = ErrorCode.UNIMPLEMENTED


# How a call ended rather than what was wrong with it: the SDK raises these for the status
# codes that have no domain class above, so that its callers never handle grpc types.
# `ErrorCode` has no DEADLINE_EXCEEDED or INTERNAL member, so a service that lets one of
# them propagate reports its dependency as unavailable.


class DeadlineExceeded(ForgelineError):
    """A call did not finish before its deadline."""

    code = ErrorCode.DEADLINE_EXCEEDED


class Cancelled(ForgelineError):
    """A call was cancelled before it finished, by the caller or by the server."""

    code = ErrorCode.CANCELLED


class Internal(ForgelineError):
    """The other side failed without a domain error (INTERNAL, UNKNOWN, DATA_LOSS, ...).

    Args:
        message: The failure as the other side described it.
        status: The status name as received, e.g. ``"INTERNAL"``.
    """

    code = ErrorCode.INTERNAL

    def __init__(self, message: str, status: str = "INTERNAL"):
        super().__init__(message)
        self.status = status
