"""Asyncio clients (`grpc.aio`), for callers that live on an event loop, like the gateway.

Same options and error conversion as the blocking clients: a bearer token on every call,
optional TLS, gRPC's retry policy on UNAVAILABLE, and `forgeline.client.exceptions`
exceptions instead of raw status codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from forgeline.client.channel import ChannelOptions, channel_arguments, tls_credentials
from forgeline.client.status import raise_for_rpc_error
from forgeline.v1 import inference_pb2, inference_pb2_grpc


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

    def _metadata(self, extra: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
        return (*self._auth, *extra)

    async def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            await self.channel.close()

    def generate_call(
        self,
        request: inference_pb2.GenerateRequest,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> grpc.aio.UnaryStreamCall:
        """Starts a Generate stream and returns the call (iterate it; `cancel()` aborts).

        Errors surface as `grpc.aio.AioRpcError` while iterating; pass them to
        `forgeline.client.status.raise_for_rpc_error` for domain exceptions.
        """
        return self.stub.Generate(request, metadata=self._metadata(metadata), timeout=timeout)

    async def generate(
        self,
        request: inference_pb2.GenerateRequest,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        """Streams one generation; leaving the loop early cancels it (and the engine aborts).

        Raises:
            NotFound, InvalidArgument, Unavailable, ...: as the service reports them.
        """
        call = self.generate_call(request, metadata=metadata, timeout=timeout)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            raise_for_rpc_error(err)
        finally:
            call.cancel()

    async def list_models(self, timeout: float | None = 10.0) -> list[inference_pb2.ServedModel]:
        """Models and adapters currently served."""
        try:
            response = await self.stub.ListServedModels(
                inference_pb2.ListServedModelsRequest(),
                metadata=self._metadata(),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise_for_rpc_error(err)
        return list(response.models)

    async def tokenize(
        self, request: inference_pb2.TokenizeRequest, timeout: float | None = 30.0
    ) -> inference_pb2.TokenizeResponse:
        """Tokenizes text or messages as Generate would."""
        try:
            return await self.stub.Tokenize(request, metadata=self._metadata(), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise_for_rpc_error(err)
