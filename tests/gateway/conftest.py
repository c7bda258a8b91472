"""Fixtures for gateway tests: the app served by uvicorn in a background thread, and an
inference server on fake engines for it (or the asyncio SDK) to talk to.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from forgeline.client import ChannelOptions, InferenceClient
from forgeline.common.settings import Settings
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.server import bind
from forgeline.inference.resolver import LocalResolver
from forgeline.inference.service import create_server
from tests.conftest import ServerThread, serving
from tests.inference.fakes import FakeEngine, FakeEngineFactory


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Serves an ASGI app on 127.0.0.1:<free port> in a thread; yields its base URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def fake_inference(root: Path, factory: FakeEngineFactory, token: str) -> Iterator[ServerThread]:
    """An inference server in a thread serving "base" on a fake engine, behind `token`."""
    (root / "base").mkdir()
    resolver = LocalResolver({"base": root / "base"})
    settings = Settings.load(
        "inference", host="127.0.0.1", port=0, home=str(root / "home"), token=token
    )
    with serving(
        lambda: create_server(settings, resolver=resolver, engine_factory=factory)[0]
    ) as thread:
        with InferenceClient(thread.address, ChannelOptions(token=token)) as client:
            client.load_model("base")
        yield thread


def aborted_requests(engine: FakeEngine) -> set[str]:
    """Engine request ids that ended early: aborted by id, or their stream closed."""
    return {*engine.aborted, *engine.closed_early}


TOKEN = "internal-token"
ERROR_FIELDS = {"message", "type", "param", "code"}
IN_FLIGHT = "forgeline_gateway_requests_in_flight"


def gateway_config(inference: ServerThread, **fields) -> GatewayConfig:
    """A gateway config for a `fake_inference` server (its token, no retries)."""
    channel = ChannelOptions(token=TOKEN, retries=False)
    return GatewayConfig(inference.address, channel=channel, **fields)


def in_flight(metrics_text: str) -> float:
    """The in-flight gauge summed over every model label, from a /metrics page."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith(IN_FLIGHT + "{")
    )


def assert_error_shape(response: httpx.Response) -> dict:
    """Checks a 4xx body is OpenAI's `{"error": {...}}`; returns the inner error."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ERROR_FIELDS, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def field_of(param: str | None) -> str | None:
    """The top-level request field of an error's `param` (`messages[0].role` -> `messages`)."""
    return None if param is None else re.split(r"[.\[]", param, maxsplit=1)[0]
