"""The wire form of Forgeline's domain exceptions: `google.rpc.Status` both ways.

A server turns an exception into a status (`status_for`) carrying a `google.rpc.ErrorInfo`
naming the exception class and the specific details (field violations, precondition,
resource, retry delay); a client rebuilds the same exception from it (`from_rpc_error`),
so callers catch `NotFound`, `InvalidArgument`, ... instead of parsing codes.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from forgeline.client import exceptions

ERROR_DOMAIN = "forgeline.dev"

_BY_CODE: dict[grpc.StatusCode, type[exceptions.ForgelineError]] = {
    grpc.StatusCode.NOT_FOUND: exceptions.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: exceptions.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: exceptions.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: exceptions.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: exceptions.ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: exceptions.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: exceptions.PermissionDenied,
    grpc.StatusCode.ABORTED: exceptions.Aborted,
    grpc.StatusCode.UNAVAILABLE: exceptions.Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: exceptions.Unimplemented,
    grpc.StatusCode.DEADLINE_EXCEEDED: exceptions.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: exceptions.Cancelled,
}


def from_rpc_error(err: grpc.RpcError) -> exceptions.ForgelineError:
    """Returns the domain exception `err` stands for, whatever its code.

    Nothing passes through as a grpc type: codes without a domain class of their own
    (INTERNAL, UNKNOWN, DATA_LOSS, ...) become `Internal` carrying the code's name.
    """
    code = err.code() if hasattr(err, "code") else None
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    message = (err.details() if hasattr(err, "details") else None) or name
    cls = _BY_CODE.get(code)
    if cls is None:
        return exceptions.Internal(message, name)
    status = rpc_status.from_call(err) if hasattr(err, "trailing_metadata") else None
    detail_msgs = {}
    for detail in status.details if status else ():
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.ResourceInfo,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                msg = kind()
                detail.Unpack(msg)
                detail_msgs[kind] = msg
    if cls is exceptions.InvalidArgument:
        bad = detail_msgs.get(error_details_pb2.BadRequest)
        violations = [
            exceptions.FieldViolation(v.field, v.description)
            for v in (bad.field_violations if bad else [])
        ] or [exceptions.FieldViolation("", message)]
        exc: exceptions.ForgelineError = exceptions.InvalidArgument.from_violations(violations)
    elif cls in (exceptions.NotFound, exceptions.AlreadyExists):
        info = detail_msgs.get(error_details_pb2.ResourceInfo)
        exc = cls(info.resource_type if info else "", info.resource_name if info else "", message)
    elif cls is exceptions.FailedPrecondition:
        pre = detail_msgs.get(error_details_pb2.PreconditionFailure)
        v = pre.violations[0] if pre and pre.violations else None
        exc = exceptions.FailedPrecondition(message, v.subject if v else "", v.type if v else "")
    elif cls is exceptions.ResourceExhausted:
        retry = detail_msgs.get(error_details_pb2.RetryInfo)
        exc = exceptions.ResourceExhausted(
            message, retry.retry_delay.ToNanoseconds() / 1e9 if retry else None
        )
    else:
        exc = cls(message)
    return exc


def raise_for_rpc_error(err: grpc.RpcError) -> NoReturn:
    """Raises the domain exception for `err`, chained to it."""
    raise from_rpc_error(err) from err


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_for(error: exceptions.ForgelineError) -> status_pb2.Status:
    """Builds the `google.rpc.Status` for a domain error, with details that help the caller.

    Every status carries an `ErrorInfo` whose reason is the exception class name, so the
    client SDK can raise the same class; the specific detail type follows the error kind.
    """
    details = [_pack(error_details_pb2.ErrorInfo(reason=type(error).__name__, domain=ERROR_DOMAIN))]
    if isinstance(error, exceptions.InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    elif isinstance(error, exceptions.FailedPrecondition):
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=error.type, subject=error.subject, description=error.message
                        )
                    ]
                )
            )
        )
    elif isinstance(error, exceptions.NotFound | exceptions.AlreadyExists):
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=error.resource_type,
                    resource_name=error.name,
                    description=error.message,
                )
            )
        )
    elif isinstance(error, exceptions.ResourceExhausted) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=getattr(code_pb2, error.code.value), message=error.message, details=details
    )
