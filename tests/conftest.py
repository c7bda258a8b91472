"""Shared fixtures: settings in a temporary home, and real servers on port 0 in a thread."""

from __future__ import annotations

import asyncio
import logging
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


class SpanRecorder:
    """Keeps the spans ended while armed (the tracer provider lives for the whole session)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.armed = False

    def spans(self) -> list:
        """The finished spans recorded so far, oldest first."""
        return list(self.exporter.get_finished_spans())

    def named(self, name: str, kind=None):
        """The one recorded span called `name` (of `kind`, a `SpanKind`, when given)."""
        found = [s for s in self.spans() if s.name == name and kind in (None, s.kind)]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]


@pytest.fixture(scope="session")
def _span_recorder() -> SpanRecorder:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    recorder = SpanRecorder()

    class WhileArmed(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            if recorder.armed:
                super().on_end(span)

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(WhileArmed(recorder.exporter))
    return recorder


@pytest.fixture
def spans(_span_recorder: SpanRecorder) -> Iterator[SpanRecorder]:
    """Records the spans this process ends during the test (an SDK tracer provider is
    installed for the rest of the session; outside such tests nothing is kept)."""
    _span_recorder.exporter.clear()
    _span_recorder.armed = True
    yield _span_recorder
    _span_recorder.armed = False
    _span_recorder.exporter.clear()


class LogLines(logging.Handler):
    """Formats every record at once (in the context it was logged in) as a JSON line."""

    def __init__(self) -> None:
        from forgeline.common.logs import JsonFormatter

        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        import json

        self.lines.append(json.loads(self.format(record)))

    def matching(self, **fields) -> list[dict]:
        """The lines holding every field given with that value."""
        return [line for line in self.lines if all(line.get(k) == v for k, v in fields.items())]


@pytest.fixture
def json_logs() -> Iterator[LogLines]:
    """Every log line of the test, rendered by the JSON formatter when it was logged."""
    handler = LogLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def run_cli(monkeypatch, tmp_path):
    """Runs `forgeline ARGS...` in this process (wide output, no stray files in the cwd)."""
    from typer.testing import CliRunner

    from forgeline.cli.main import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORGELINE_HOME", str(tmp_path / "home"))

    def run(*args: str):
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})

    return run
