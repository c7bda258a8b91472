"""Runs the gateway app with uvicorn (uvloop and httptools when installed).

`run_gateway(settings)` binds the socket itself, so that port 0 works and the bound port
can be printed first thing (scripts and tests read it), then serves until SIGTERM/SIGINT
and shuts down gracefully. TLS turns on with `FORGELINE_TLS_CERT` / `FORGELINE_TLS_KEY`.
Its configuration is checked before anything binds (`startup_config`): a gateway with no
API keys refuses to listen beyond loopback unless told `--insecure-no-keys`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType

from forgeline.common.settings import Settings
from forgeline.gateway.app import create_app
from forgeline.gateway.config import GatewayConfig, check_exposure
from forgeline.gateway.shared_limits import redacted

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (IPv6 when the host has a colon)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def graceful_server_class():
    """uvicorn's `Server` class, stopping gracefully with exit status 0 (the console too)."""
    import uvicorn

    class GatewayServer(uvicorn.Server):
        """uvicorn's server, except that a SIGTERM/SIGINT shutdown exits with status 0.

        uvicorn re-raises the signal after its graceful shutdown, so the process would die
        of it; every Forgeline service instead exits 0 after a graceful stop.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def _on_signal(self, sig: int, frame: FrameType | None) -> None:
            log.info("shutting down (signal %d)", sig)
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    return GatewayServer


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def uvicorn_config(app, settings: Settings):
    """The uvicorn configuration the gateway runs with."""
    import uvicorn

    kwargs = {}
    if settings.tls.enabled:
        kwargs.update(ssl_certfile=settings.tls.cert_file, ssl_keyfile=settings.tls.key_file)
    return uvicorn.Config(
        app,
        loop="uvloop" if _have("uvloop") else "asyncio",
        http="httptools" if _have("httptools") else "h11",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.grace_seconds),
        **kwargs,
    )


def startup_config(settings: Settings) -> GatewayConfig:
    """The gateway's config, once it is known that it may listen where `settings` say.

    Raises:
        ValueError: the keys file or the Redis URL is malformed, or there are no keys and
            the host is not loopback without `--insecure-no-keys` (`OpenGatewayRefused`);
            the message names what to change.
    """
    config = GatewayConfig.from_settings(settings)
    if check_exposure(settings.host, config.keys, settings.gateway_insecure_no_keys):
        log.warning(
            "INSECURE: no API keys and listening on %s (--insecure-no-keys / "
            "FORGELINE_GATEWAY_INSECURE_NO_KEYS): ANYONE WHO CAN REACH THIS ADDRESS CAN USE "
            "EVERY SERVED MODEL. Configure FORGELINE_GATEWAY_KEYS_FILE or "
            "FORGELINE_GATEWAY_API_KEYS to close it.",
            settings.host,
        )
    elif not config.keys.enabled:
        log.warning("no API keys configured: the gateway answers anyone who can reach it")
    return config


def run_gateway(settings: Settings, config: GatewayConfig | None = None) -> None:
    """Serves the gateway until SIGTERM or SIGINT.

    Args:
        settings: The process's settings.
        config: Its `startup_config`, when the caller already checked it.

    Raises:
        ValueError: the configuration is refused (see `startup_config`).
        OSError: the address cannot be bound.
    """
    if config is None:
        config = startup_config(settings)
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    print(f"gateway listening on {settings.host}:{port}", flush=True)
    log.info(
        "gateway on %s:%d -> inference at %s (keys: %d, tls: %s, rate limits: %s)",
        settings.host,
        port,
        config.inference_address,
        len(config.keys.keys),
        settings.tls.enabled,
        f"shared in Redis at {redacted(config.redis_url)}" if config.redis_url else "in process",
    )
    server = graceful_server_class()(uvicorn_config(create_app(config), settings))
    server.run(sockets=[sock])
    log.info("gateway stopped")
