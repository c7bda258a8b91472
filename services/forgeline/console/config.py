"""What the console needs to run: where the services are, its token, the playground's key.

`ConsoleConfig.from_settings` reads them from `Settings`. The console asks every browser
for its token; with none configured it makes a one-off token on loopback (printed, and
written to `<home>/console/token` readable by the owner only) and refuses to listen
beyond loopback, by the rule the gateway applies to its API keys.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from forgeline.client.channel import ChannelOptions
from forgeline.common.settings import ServiceName, Settings, is_loopback

log = logging.getLogger(__name__)


class OpenConsoleRefused(ValueError):
    """The console would listen beyond loopback with no token to ask for."""


@dataclass(frozen=True)
class ConsoleConfig:
    """Everything the console app needs.

    Attributes:
        addresses: host:port of each gRPC service it calls.
        channel: How it calls them (the service token stays on the server).
        gateway_url: Base URL of the gateway the playground streams through.
        gateway_key: API key sent to the gateway; empty when it needs none.
        gateway_ca: CA bundle that verifies the gateway's certificate (FORGELINE_TLS_CA);
            empty for the system's.
        token: What a browser must give to open a session.
        secure_cookies: Mark the session cookie Secure (the console speaks TLS).
        session_seconds: How long a session lasts.
        token_file: Where a one-off token was written, when one was made.
    """

    addresses: dict[ServiceName, str]
    channel: ChannelOptions
    gateway_url: str
    gateway_key: str = field(default="", repr=False)
    gateway_ca: str = ""
    token: str = field(default="", repr=False)
    secure_cookies: bool = False
    session_seconds: float = 12 * 3600.0
    token_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleConfig:
        """The config of a console process.

        Raises:
            OpenConsoleRefused: no FORGELINE_CONSOLE_TOKEN and the host is not loopback.
        """
        token, token_file = settings.console_token, None
        if not token:
            if not is_loopback(settings.host):
                raise OpenConsoleRefused(
                    f"the console would listen on {settings.host} with no token: set "
                    "FORGELINE_CONSOLE_TOKEN, or bind it to loopback (FORGELINE_HOST=127.0.0.1)"
                )
            token = secrets.token_urlsafe(24)
            token_file = write_token(settings.home / "console" / "token", token)
        keys = [k.strip() for k in settings.gateway_api_keys.split(",") if k.strip()]
        scheme = "https" if settings.tls.enabled else "http"
        return cls(
            addresses=dict(settings.addresses),
            channel=settings.channel_options(),
            gateway_url=f"{scheme}://{settings.gateway_address}",
            gateway_key=settings.console_gateway_key or (keys[0] if keys else ""),
            gateway_ca=settings.tls.ca_file,
            token=token,
            secure_cookies=settings.tls.enabled,
            token_file=token_file,
        )


def write_token(path: Path, token: str) -> Path:
    """Writes a one-off token readable by its owner only; returns the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return path
