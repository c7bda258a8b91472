"""Runs the console app with uvicorn, the way the gateway runs (see `gateway.server`):
the socket bound first so that port 0 works and the bound port is printed, graceful stop
on SIGTERM/SIGINT with exit status 0, TLS from `FORGELINE_TLS_CERT` / `FORGELINE_TLS_KEY`.
"""

from __future__ import annotations

import logging

from forgeline.common.settings import Settings
from forgeline.console.app import create_app
from forgeline.console.config import ConsoleConfig
from forgeline.gateway.server import bind, graceful_server_class, uvicorn_config

log = logging.getLogger(__name__)


def run_console(settings: Settings, config: ConsoleConfig | None = None) -> None:
    """Serves the console until SIGTERM or SIGINT.

    Args:
        settings: The process's settings.
        config: Its `ConsoleConfig`, when the caller already made it.

    Raises:
        OpenConsoleRefused: no token and not on loopback.
        OSError: the address cannot be bound.
    """
    if config is None:
        config = ConsoleConfig.from_settings(settings)
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    print(f"console listening on {settings.host}:{port}", flush=True)
    if config.token_file is not None:
        # Printed so that whoever started it can log in; the file keeps it for later.
        print(f"console token: {config.token} (also in {config.token_file})", flush=True)
    log.info(
        "console on %s:%d -> registry at %s, gateway at %s (tls: %s)",
        settings.host,
        port,
        config.addresses.get("registry"),
        config.gateway_url,
        settings.tls.enabled,
    )
    server = graceful_server_class()(uvicorn_config(create_app(config), settings))
    server.run(sockets=[sock])
    log.info("console stopped")
