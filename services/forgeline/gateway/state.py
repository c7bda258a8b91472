"""The state one gateway app shares between its requests.

The inference client connects on first use, inside the server's event loop (an asyncio
channel belongs to the loop it was opened on). Calls to it share the connection's streams:
model listings take one (shared by every caller, `catalog.ModelListing`), generations the
rest (`capacity.StreamSlots`).
"""

from __future__ import annotations

from forgeline.client.aio import AsyncInferenceClient
from forgeline.gateway.access import Access
from forgeline.gateway.capacity import StreamSlots
from forgeline.gateway.catalog import ModelListing
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.metrics import GatewayMetrics


class Gateway:
    """The gateway's state: the inference client and its streams, access control, metrics.

    Args:
        config: Inference address, keys and limits.
        client: An inference client to use instead of connecting to `config`'s address.
    """

    def __init__(self, config: GatewayConfig, client: AsyncInferenceClient | None = None):
        self.config = config
        self._client = client
        self.metrics = GatewayMetrics()
        self.access = Access(config.keys, self.metrics)
        self.models = ModelListing(lambda: self.client)
        # One stream stays for the model listing; generations (and their Tokenize calls)
        # share the others.
        self.streams = StreamSlots(config.inference_streams - 1)

    @property
    def client(self) -> AsyncInferenceClient:
        """The inference client, connected on first use (inside the server's event loop)."""
        if self._client is None:
            self._client = AsyncInferenceClient(self.config.inference_address, self.config.channel)
        return self._client

    async def close(self) -> None:
        """Closes the inference channel."""
        if self._client is not None:
            await self._client.close()
