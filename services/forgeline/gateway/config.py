"""What the gateway needs to run: where the inference service is, how to reach it, the
accepted API keys, where rate limits are kept and the request-size limit, built from the
`FORGELINE_*` settings; and whether it may listen where it is asked to.

A gateway with no API keys answers anyone, so it only starts that way on a loopback
address (127.0.0.0/8, ::1, `localhost`) unless told `--insecure-no-keys`
(`FORGELINE_GATEWAY_INSECURE_NO_KEYS=1`): `check_exposure` decides, before anything binds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from forgeline.client.channel import ChannelOptions
from forgeline.common.settings import ServiceName, Settings, is_loopback
from forgeline.gateway.keys import KeyStore

REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> None:
    """Checks that `url` names a Redis server.

    Raises:
        ValueError: it does not; the message names FORGELINE_GATEWAY_REDIS_URL.
    """
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise ValueError(
            "FORGELINE_GATEWAY_REDIS_URL must be a redis://, rediss:// or unix:// URL "
            f"(e.g. redis://redis:6379/0), got one with scheme {scheme!r}"
        )


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway needs to run.

    Attributes:
        inference_address: ``host:port`` of the inference service.
        channel: Token and TLS for calls to it.
        keys: Accepted API keys; empty means open access.
        redis_url: Redis that replicas share rate limits through; empty keeps them in
            this process.
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
    redis_url: str = field(default="", repr=False)
    max_body_bytes: int = 2 * 1024 * 1024
    max_generations_per_request: int = 256
    inference_streams: int = 256

    def __post_init__(self) -> None:
        if self.inference_streams < 2:
            raise ValueError(
                "inference_streams (FORGELINE_MAX_STREAMS_PER_CONNECTION) must be at least 2, "
                f"got {self.inference_streams}"
            )
        if self.redis_url:
            check_redis_url(self.redis_url)

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        """Builds the config from the `FORGELINE_*` settings.

        Raises:
            ValueError: the keys file is malformed (the message names the entry), or
                FORGELINE_GATEWAY_REDIS_URL is not a Redis URL.
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
            redis_url=settings.gateway_redis_url,
            max_body_bytes=settings.gateway_max_body_bytes,
            # Both ends of the connection read the same setting.
            inference_streams=settings.max_streams_per_connection,
        )


class OpenGatewayRefused(ValueError):
    """The gateway was asked to listen beyond loopback with no API keys."""


def check_exposure(host: str, keys: KeyStore, insecure_no_keys: bool) -> bool:
    """Decides whether the gateway may listen on `host` with `keys`.

    Args:
        host: The address it is to bind.
        keys: The keys it accepts; none means it answers anyone.
        insecure_no_keys: Whether it was told it may run open beyond loopback.

    Returns:
        True when it will listen beyond loopback with no keys (allowed by
        `insecure_no_keys`): the caller warns loudly.

    Raises:
        OpenGatewayRefused: no keys, a non-loopback `host`, and no `insecure_no_keys`; the
            message names the settings that fix it.
    """
    if keys.enabled or is_loopback(host):
        return False
    if insecure_no_keys:
        return True
    raise OpenGatewayRefused(
        f"refusing to listen on {host or 'every address'} with no API keys: anyone who can "
        "reach it could use every served model. Configure keys "
        "(FORGELINE_GATEWAY_KEYS_FILE, or FORGELINE_GATEWAY_API_KEYS; `forgeline api-key` "
        "makes one), listen on loopback only (--host 127.0.0.1 / FORGELINE_HOST), or, to "
        "run open on purpose, pass --insecure-no-keys (FORGELINE_GATEWAY_INSECURE_NO_KEYS=1)"
    )
