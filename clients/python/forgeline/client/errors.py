"""Turns gRPC errors back into Forgeline's domain exceptions on the client side.

The server attaches a `google.rpc.ErrorInfo` naming the exception class and the specific
details (field violations, precondition, resource, retry delay); this module rebuilds the
same exception so callers catch `NotFound`, `InvalidArgument`, ... instead of parsing codes.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from forgeline.common import errors

_BY_CODE: dict[grpc.StatusCode, type[errors.ForgelineError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.ABORTED: errors.Aborted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: errors.Unimplemented,
}


def from_rpc_error(err: grpc.RpcError) -> errors.ForgelineError | grpc.RpcError:
    """Returns the domain exception `err` stands for, or `err` itself for other codes."""
    code = err.code() if hasattr(err, "code") else None
    cls = _BY_CODE.get(code)
    if cls is None:
        return err
    message = err.details() or code.name
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
    if cls is errors.InvalidArgument:
        bad = detail_msgs.get(error_details_pb2.BadRequest)
        violations = [
            errors.FieldViolation(v.field, v.description)
            for v in (bad.field_violations if bad else [])
        ] or [errors.FieldViolation("", message)]
        exc: errors.ForgelineError = errors.InvalidArgument.from_violations(violations)
    elif cls in (errors.NotFound, errors.AlreadyExists):
        info = detail_msgs.get(error_details_pb2.ResourceInfo)
        exc = cls(info.resource_type if info else "", info.resource_name if info else "", message)
    elif cls is errors.FailedPrecondition:
        pre = detail_msgs.get(error_details_pb2.PreconditionFailure)
        v = pre.violations[0] if pre and pre.violations else None
        exc = errors.FailedPrecondition(message, v.subject if v else "", v.type if v else "")
    elif cls is errors.ResourceExhausted:
        retry = detail_msgs.get(error_details_pb2.RetryInfo)
        exc = errors.ResourceExhausted(
            message, retry.retry_delay.ToNanoseconds() / 1e9 if retry else None
        )
    else:
        exc = cls(message)
    return exc


def raise_for_rpc_error(err: grpc.RpcError) -> NoReturn:
    """Raises the domain exception for `err` (chained), or `err` itself."""
    exc = from_rpc_error(err)
    if exc is err:
        raise err
    raise exc from err
