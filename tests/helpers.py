"""Helpers for end-to-end tests that run real `forgeline` processes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from forgeline.common.processes import (
    FORGELINE,
    ServiceProcess,
    free_port,
    start_service,
)

__all__ = [
    "FORGELINE",
    "ServiceProcess",
    "eventually",
    "free_port",
    "scrape",
    "serve_app",
    "start_service",
    "wait_for",
]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02) -> None:
    """Polls `predicate` until it is true.

    Raises:
        TimeoutError: it stayed false for `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(interval)


async def eventually(predicate, timeout: float = 5.0) -> None:
    """`wait_for` for coroutines: polls `predicate` without blocking the event loop.

    Raises:
        TimeoutError: it stayed false for `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        await asyncio.sleep(0.005)


def scrape(port: int) -> dict[str, float]:
    """The samples of a Prometheus endpoint on 127.0.0.1:`port`, by `name{labels}`.

    Labels appear sorted, as prometheus_client writes them:
    `forgeline_rpc_handled_total{code="OK",method="GetModel",service="..."}`.
    """
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Serves an ASGI app on 127.0.0.1:<free port> in a thread; yields its base URL."""
    import uvicorn

    from forgeline.gateway.server import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
