"""What every blocking client shares: a channel it owns or borrows, and error conversion.

Each typed method calls its stub method through `_unary` or `_server_stream`, so gRPC
errors always come back as `forgeline.client.exceptions` (see `forgeline.client.status`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from forgeline.client.channel import ChannelOptions, open_channel
from forgeline.client.refs import parse_ref
from forgeline.client.status import raise_for_rpc_error
from forgeline.v1 import common_pb2

ResponseT = TypeVar("ResponseT")

# A reference as callers give it: text (`name`, `name:3`, `name@alias`) or a `ModelRef`.
RefLike = str | common_pb2.ModelRef


def as_ref(ref: RefLike) -> common_pb2.ModelRef:
    """A `ModelRef` for `ref`.

    Raises:
        RefError: the text is not a valid reference.
    """
    return parse_ref(ref) if isinstance(ref, str) else ref


class BaseClient:
    """Owns a channel (or borrows one) and calls stub methods with error conversion.

    Args:
        target: ``host:port`` to connect to, or an open `grpc.Channel` to borrow.
        options: Token, TLS and retries (for a channel this client opens).
    """

    def __init__(self, target: str | grpc.Channel, options: ChannelOptions | None = None):
        self._owns_channel = isinstance(target, str)
        self._channel = open_channel(target, options) if isinstance(target, str) else target

    def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @staticmethod
    def _unary(
        method: Callable[..., ResponseT], request: Any, timeout: float | None = 60.0
    ) -> ResponseT:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as err:
            raise_for_rpc_error(err)

    @staticmethod
    def _server_stream(
        method: Callable[..., Any], request: Any, timeout: float | None = None
    ) -> Iterator[Any]:
        call = method(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as err:
            raise_for_rpc_error(err)
        finally:
            # A caller that stops iterating early ends the call (the server sees CANCELLED).
            call.cancel()
