"""Asyncio clients (`grpc.aio`), for callers that live on an event loop, like the gateway.

Same options as the blocking clients: a bearer token on every call, optional TLS, gRPC's
retry policy on UNAVAILABLE, the trace context and request id of `telemetry`. Every failure
is raised as a `forgeline.client.exceptions` exception, including the codes without a
domain meaning (`DeadlineExceeded`, `Cancelled`, `Internal`), so callers never handle grpc
types.

Example:
    >>> async with AsyncInferenceClient("127.0.0.1:50054") as client:
    ...     stream = client.generate(request)
    ...     first = await stream.first()  # NotFound, InvalidArgument, ... surface here
    ...     async for response in stream:  # the first message again, then the rest
    ...         ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType

import grpc

from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions, channel_arguments, tls_credentials
from forgeline.client.status import raise_for_rpc_error
from forgeline.client.telemetry import call_metadata, end_span_when_done, start_call_span
from forgeline.v1 import inference_pb2, inference_pb2_grpc

_SERVICE = "/forgeline.v1.InferenceService/"
_GENERATE, _LIST_MODELS, _TOKENIZE = (
    _SERVICE + m for m in ("Generate", "ListServedModels", "Tokenize")
)


def open_aio_channel(address: str, options: ChannelOptions | None = None) -> grpc.aio.Channel:
    """Opens an asyncio channel to `address` with TLS and retries as configured.

    The bearer token is not part of the channel: the clients below send it per call.
    """
    options = options or ChannelOptions()
    if options.tls:
        return grpc.aio.secure_channel(
            address, tls_credentials(options), options=channel_arguments(options)
        )
    return grpc.aio.insecure_channel(address, options=channel_arguments(options))


def _task_is_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class GenerateStream:
    """One Generate call in flight: await its first message, iterate it, or cancel it.

    The call starts when the stream is created. `first()` waits for the first message,
    which is where a refused request (unknown model, bad parameters, a model that is not
    ready) surfaces; iterating then yields that message once more and the rest after it.
    `cancel()` ends the call, and the inference service aborts the request in its engine;
    a reader then gets `Cancelled` after what it had already received. Leaving an
    ``async with`` block (or `aclose()`) cancels the call too. One reader at a time.

    Args:
        call: The started call; build streams with `AsyncInferenceClient.generate`.
    """

    def __init__(self, call: grpc.aio.UnaryStreamCall):
        self._call = call
        self._first: inference_pb2.GenerateResponse | None = None
        self._first_read = False
        # The first message was read by `first()` and is still owed to the iterator.
        self._first_owed = False
        self._ended = False
        self._cancelled = False

    async def first(self) -> inference_pb2.GenerateResponse | None:
        """The stream's first message (read once), or None when the stream ended empty.

        Raises:
            NotFound, InvalidArgument, Unavailable, ...: the service refused the request.
            DeadlineExceeded: the call's timeout passed first.
            Cancelled: the call was cancelled.
            Internal: the service failed without a domain error.
        """
        if not self._first_read:
            self._first = await self._read()
            self._first_read = True
            self._first_owed = self._first is not None
        return self._first

    def __aiter__(self) -> GenerateStream:
        return self

    async def __anext__(self) -> inference_pb2.GenerateResponse:
        """The next message, the one `first()` returned included.

        Raises:
            StopAsyncIteration: the stream ended.
            ForgelineError: as `first()` raises, also after some messages.
        """
        if not self._first_read:
            await self.first()
        if self._first_owed:
            self._first_owed = False
            assert self._first is not None
            return self._first
        message = await self._read()
        if message is None:
            raise StopAsyncIteration
        return message

    def cancel(self) -> bool:
        """Cancels the call, so that the engine aborts the request.

        Returns:
            Whether this cancelled it (False when the call had already ended).
        """
        self._cancelled = True
        return self._call.cancel()

    async def aclose(self) -> None:
        """Cancels the call if it still runs (so `contextlib.aclosing` works on streams)."""
        self.cancel()

    async def __aenter__(self) -> GenerateStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _read(self) -> inference_pb2.GenerateResponse | None:
        if self._ended:
            return None
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as err:
            self._ended = True
            raise_for_rpc_error(err)
        except asyncio.CancelledError:
            # grpc.aio reports a locally cancelled call as CancelledError; that is only a
            # cancellation of this task when someone cancelled the task itself.
            if self._cancelled and not _task_is_cancelled():
                self._ended = True
                raise exceptions.Cancelled("the Generate call was cancelled") from None
            raise
        if message is grpc.aio.EOF:
            self._ended = True
            return None
        return message


class AsyncInferenceClient:
    """Asyncio client of the inference service.

    Args:
        target: ``host:port``, or an open `grpc.aio.Channel` to borrow.
        options: Token, TLS and retries.
    """

    def __init__(self, target: str | grpc.aio.Channel, options: ChannelOptions | None = None):
        options = options or ChannelOptions()
        self._owns_channel = isinstance(target, str)
        self.channel = open_aio_channel(target, options) if isinstance(target, str) else target
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self._auth: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {options.token}"),) if options.token else ()
        )

    def _start(self, method: str, stub_method, request, extra=(), **kwargs):
        """Starts a call of `method` as a traced CLIENT span carrying the token."""
        span = start_call_span(method)
        call = stub_method(request, metadata=call_metadata(span, (*self._auth, *extra)), **kwargs)
        end_span_when_done(span, call)
        return call

    async def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            await self.channel.close()

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def generate(
        self,
        request: inference_pb2.GenerateRequest,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> GenerateStream:
        """Starts one generation and returns its stream (see `GenerateStream`).

        Args:
            request: What to generate.
            metadata: Extra call metadata, e.g. ``(("x-request-id", "..."),)``.
            timeout: Seconds for the whole stream; None for no deadline.
        """
        call = self._start(_GENERATE, self.stub.Generate, request, metadata, timeout=timeout)
        return GenerateStream(call)

    async def list_models(self, timeout: float | None = 10.0) -> list[inference_pb2.ServedModel]:
        """Models and adapters currently served.

        Raises:
            Unavailable: the service cannot be reached.
            DeadlineExceeded: it did not answer within `timeout` seconds.
            ForgelineError: any other failure, as a domain exception.
        """
        try:
            response = await self._start(
                _LIST_MODELS,
                self.stub.ListServedModels,
                inference_pb2.ListServedModelsRequest(),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise_for_rpc_error(err)
        return list(response.models)

    async def tokenize(
        self, request: inference_pb2.TokenizeRequest, timeout: float | None = 30.0
    ) -> inference_pb2.TokenizeResponse:
        """Tokenizes text or messages as Generate would.

        Raises:
            NotFound: no model is served under the request's name.
            InvalidArgument: the request is malformed.
            ForgelineError: any other failure, as a domain exception.
        """
        try:
            return await self._start(_TOKENIZE, self.stub.Tokenize, request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise_for_rpc_error(err)
