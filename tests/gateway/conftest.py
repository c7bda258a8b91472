"""Fixtures for gateway tests: the app served by uvicorn in a background thread, an
inference server on fake engines for it (or the asyncio SDK) to talk to, and a real
redis-server of the tests' own for the rate limits that replicas share.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from forgeline.client import ChannelOptions, InferenceClient
from forgeline.common.settings import Settings
from forgeline.gateway.config import GatewayConfig
from forgeline.inference.resolver import LocalResolver
from forgeline.inference.service import create_server
from tests.conftest import ServerThread, serving
from tests.helpers import (
    free_port,
    serve_app,  # noqa: F401  (the gateway tests import it from here)
    wait_for,
)
from tests.inference.fakes import FakeEngine, FakeEngineFactory


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


@dataclass
class RedisServer:
    """A redis-server process started for the tests."""

    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        """Stops it (and waits until it has exited)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(root: Path) -> Iterator[RedisServer]:
    """A redis-server of its own on a free loopback port, its files under `root`, that
    saves nothing to disk. Skips the test when `redis-server` is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI has it)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    args += ["--save", "", "--appendonly", "no", "--logfile", str(root / "redis.log")]
    server = RedisServer(f"redis://127.0.0.1:{port}/0", subprocess.Popen(args))
    try:
        wait_for(lambda: _answers_ping(port) or server.process.poll() is not None, timeout=10)
        if server.process.poll() is not None:
            log = (root / "redis.log").read_text() if (root / "redis.log").exists() else ""
            raise RuntimeError(f"redis-server exited ({server.process.returncode}): {log}")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """The URL of a redis-server the gateway tests share (tests keep apart by key prefix)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url
