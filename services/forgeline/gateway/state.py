"""The state one gateway app shares between its requests.

The inference client connects on first use, inside the server's event loop (an asyncio
channel belongs to the loop it was opened on). Calls to it share the connection's streams:
model listings take one (shared by every caller, `catalog.ModelListing`), generations the
rest (`capacity.StreamSlots`). Rate limits are kept in this process, or in Redis when the
config names one (shared with the other replicas).
"""

from __future__ import annotations

from forgeline.client.aio import AsyncInferenceClient
from forgeline.gateway.access import Access
from forgeline.gateway.capacity import StreamSlots
from forgeline.gateway.catalog import ModelListing
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.limits import Limiter, RateLimiter
from forgeline.gateway.metrics import GatewayMetrics
from forgeline.gateway.shared_limits import RedisLimiter


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
        self.access = Access(config.keys, self.metrics, limiter(config))
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
        """Settles what is still being settled, then closes the inference channel and the
        connections to Redis."""
        try:
            await self.access.limiter.close()
        finally:
            if self._client is not None:
                await self._client.close()


def limiter(config: GatewayConfig) -> Limiter:
    """The rate limiter `config` asks for: shared through Redis, or in this process."""
    return RedisLimiter(config.redis_url) if config.redis_url else RateLimiter()
