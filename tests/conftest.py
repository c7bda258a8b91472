"""Shared fixtures: settings in a temporary home, and real servers on port 0 in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from forgeline.client.channel import ChannelOptions
from forgeline.client.registry import RegistryClient
from forgeline.common.ray_cluster import WORKER_ENV
from forgeline.common.server import ForgelineServer
from forgeline.common.settings import ServiceName, Settings


class ServerThread:
    """Runs a `ForgelineServer` on its own event loop in a background thread.

    Tests then talk to it with the ordinary (blocking) SDK over a real channel.
    """

    def __init__(self, factory: Callable[[], ForgelineServer]):
        self._factory = factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: ForgelineServer | None = None

    @property
    def address(self) -> str:
        """host:port of the running server."""
        return f"127.0.0.1:{self.server.port}"

    def run(self, coro):
        """Runs a coroutine on the server's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def start(self) -> ServerThread:
        """Builds (inside the loop) and starts the server."""
        self._thread.start()

        async def build() -> ForgelineServer:
            server = self._factory()
            await server.start()
            return server

        self.server = self.run(build())
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        """Stops the server gracefully and ends the thread."""
        if self.server is not None:
            self.run(self.server.stop(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def serving(factory: Callable[[], ForgelineServer]) -> Iterator[ServerThread]:
    """Context manager around `ServerThread`."""
    thread = ServerThread(factory).start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh data directory."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def settings_for(home: Path) -> Callable[..., Settings]:
    """Builds settings for a service bound to 127.0.0.1:0 in the temporary home."""

    def make(service: ServiceName | str, **overrides) -> Settings:
        return Settings.load(service, host="127.0.0.1", port=0, home=home, **overrides)

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that loads the real model (through `bundled_model`) as `model`."""
    for item in items:
        if "bundled_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    """The bundled SmolLM2 as a Hugging Face folder (converted once into the cache)."""
    from forgeline.common.bundled import import_bundled

    return import_bundled()


@pytest.fixture(scope="session")
def ray_cluster():
    """A small local Ray (2 CPUs, no dashboard), shared by every test that trains on Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": dict(WORKER_ENV)},
        )
    yield ray
    ray.shutdown()


@pytest.fixture
def registry_server(settings_for: Callable[..., Settings]) -> Iterator[ServerThread]:
    """A real registry on port 0 over the temporary home."""
    from forgeline.registry.service import create_server

    with serving(lambda: create_server(settings_for("registry"))[0]) as server:
        yield server


@pytest.fixture
def registry_client(registry_server: ServerThread) -> Iterator[RegistryClient]:
    """A client of `registry_server` that does not retry."""
    with RegistryClient(registry_server.address, ChannelOptions(retries=False)) as client:
        yield client
