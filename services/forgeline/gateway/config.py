"""What the gateway needs to run: where the inference service is, how to reach it, the
accepted API keys and the request-size limit, built from the `FORGELINE_*` settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forgeline.client.channel import ChannelOptions
from forgeline.common.settings import ServiceName, Settings
from forgeline.gateway.keys import KeyStore


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway needs to run.

    Attributes:
        inference_address: ``host:port`` of the inference service.
        channel: Token and TLS for calls to it.
        keys: Accepted API keys; empty means open access.
        max_body_bytes: Largest request body (413 beyond).
        max_generations_per_request: Most generations (prompts x `n`) one request may
            start (400 beyond).
        inference_streams: Most calls kept open to the inference service at once (more
            wait their turn); at most the service's streams per connection, which it
            refuses beyond. A request cannot have more prompts than this, less one.
    """

    inference_address: str
    # The OpenAI SDKs retry 503s themselves; retrying here too would multiply waits.
    channel: ChannelOptions = field(default_factory=lambda: ChannelOptions(retries=False))
    keys: KeyStore = field(default_factory=KeyStore)
    max_body_bytes: int = 2 * 1024 * 1024
    max_generations_per_request: int = 256
    inference_streams: int = 256

    def __post_init__(self) -> None:
        if self.inference_streams < 2:
            raise ValueError(
                "inference_streams (FORGELINE_MAX_STREAMS_PER_CONNECTION) must be at least 2, "
                f"got {self.inference_streams}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        """Builds the config from the `FORGELINE_*` settings.

        Raises:
            ValueError: the keys file is malformed (the message names the entry).
        """
        return cls(
            inference_address=settings.addresses[ServiceName.INFERENCE],
            channel=ChannelOptions(
                token=settings.token,
                tls=bool(settings.tls.ca_file),
                ca_file=settings.tls.ca_file,
                retries=False,
            ),
            keys=KeyStore.load(settings.gateway_keys_file, settings.gateway_api_keys),
            max_body_bytes=settings.gateway_max_body_bytes,
            # Both ends of the connection read the same setting.
            inference_streams=settings.max_streams_per_connection,
        )
