"""Prometheus metrics of a gRPC service and the HTTP endpoint that serves them.

Each server has its own `CollectorRegistry` (`ServiceMetrics.registry`), so several servers
in one process (tests) never share counters; the process-wide registry (process CPU and
memory, and in the inference service vLLM's own `vllm:*` metrics) is served beside it. The
endpoint (`MetricsEndpoint`) answers `GET /metrics` on its own port, on the server's event
loop, with TLS when the service has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

RPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# A request line and headers beyond these are not a scrape.
READ_SECONDS = 10.0
MAX_HEADER_LINES = 100


class _ProcessRegistry:
    """Serves the process-wide registry's metrics from a per-server one."""

    def describe(self) -> list[Metric]:
        return []  # names are not claimed: the global registry owns them

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class ServiceMetrics:
    """The RPC metrics every gRPC service has, in a registry of its own.

    Services add their own metrics to `registry` (jobs, bytes, engines).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["service", "method"]
        self.started = Counter(
            "forgeline_rpc_started", "Calls received, by method.", labels, registry=r
        )
        self.handled = Counter(
            "forgeline_rpc_handled",
            "Calls ended, by method and status code (streams when their last message is sent).",
            [*labels, "code"],
            registry=r,
        )
        self.duration = Histogram(
            "forgeline_rpc_duration_seconds",
            "Time from a call's start to its end (for streams, to the end of the stream).",
            labels,
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "forgeline_rpc_in_flight", "Calls being handled now.", labels, registry=r
        )
        r.register(_ProcessRegistry())  # type: ignore[arg-type]

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsEndpoint:
    """`GET /metrics` over HTTP (HTTPS with `ssl_context`) on the running event loop.

    Args:
        metrics: What to serve.
        host: Address to bind.
        port: Port to bind; 0 picks a free one (`port` holds it once started).
        ssl_context: TLS for the endpoint, or None.
    """

    def __init__(
        self,
        metrics: ServiceMetrics,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.metrics = metrics
        self.host = host.strip("[]")
        self.port = port
        self.ssl_context = ssl_context
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        """Binds and starts serving; returns the bound port.

        Raises:
            RuntimeError: the address could not be bound (the message names the setting).
        """
        try:
            self._server = await asyncio.start_server(
                self._answer, self.host, self.port, ssl=self.ssl_context
            )
        except OSError as err:
            raise RuntimeError(
                f"could not bind the metrics endpoint {self.host}:{self.port} "
                f"(FORGELINE_METRICS_PORT): {err.strerror}"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stops listening and closes the open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                self._server.close_clients()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body, content_type = await asyncio.wait_for(
                self._response(reader), READ_SECONDS
            )
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, ssl.SSLError):
            pass  # a client that does not speak HTTP, or left: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _response(self, reader: asyncio.StreamReader) -> tuple[str, bytes, str]:
        """(status line, body, content type) for the request `reader` holds."""
        parts = (await reader.readline()).decode("latin-1").split()
        for _ in range(MAX_HEADER_LINES):
            if (await reader.readline()) in (b"\r\n", b"\n", b""):
                break
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", b"bad request\n", "text/plain"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if target not in ("/metrics", "/"):
            return "404 Not Found", b"see /metrics\n", "text/plain"
        if method != "GET":
            return "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
        return "200 OK", self.metrics.render(), CONTENT_TYPE_LATEST
