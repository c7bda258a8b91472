"""gRPC server scaffolding shared by every service.

`build_server` assembles a `grpc.aio` server with the standard health service, server
reflection, the telemetry, auth and error interceptors and optional TLS, and binds it; the
server's Prometheus endpoint starts and stops with it. Each service exposes
`create_server(settings) -> (server, port)` on top of it; `serve` runs one until
SIGTERM/SIGINT and shuts it down gracefully.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from forgeline.common.interceptors import BearerAuthInterceptor, ErrorInterceptor
from forgeline.common.metrics import MetricsEndpoint, ServiceMetrics
from forgeline.common.rpc_telemetry import TelemetryInterceptor
from forgeline.common.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Service:
    """One gRPC service to host: its full name and how to add its servicer to a server."""

    name: str
    register: Callable[[grpc.aio.Server], None]


@dataclass
class ForgelineServer:
    """A bound, not yet started server plus the hooks that run around its life.

    `metrics` holds the server's Prometheus metrics; `metrics_endpoint` serves them (None
    when FORGELINE_METRICS_PORT is off), on `metrics_port` once started.
    """

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str]
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    metrics_endpoint: MetricsEndpoint | None = None
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The service's core objects by name (e.g. "jobs": the JobManager), for tests and tools.
    components: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics_port(self) -> int | None:
        """The port of the metrics endpoint once started; None when there is none."""
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    async def start(self) -> None:
        """Runs start hooks, starts serving (metrics too), marks every service SERVING.

        Raises:
            RuntimeError: the metrics endpoint could not be bound.
        """
        if self.metrics_endpoint is not None:  # first: a port taken leaves nothing running
            await self.metrics_endpoint.start()
        for hook in self.on_start:
            await hook()
        await self.server.start()
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Marks NOT_SERVING, lets in-flight calls finish for `grace` seconds, runs stop hooks."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.stop()
        for hook in reversed(self.on_stop):
            await hook()


def _credentials(settings: Settings) -> grpc.ServerCredentials:
    with open(settings.tls.cert_file, "rb") as f:
        cert = f.read()
    with open(settings.tls.key_file, "rb") as f:
        key = f.read()
    return grpc.ssl_server_credentials([(key, cert)])


def _metrics_endpoint(settings: Settings, metrics: ServiceMetrics) -> MetricsEndpoint | None:
    port = settings.metrics_listen_port
    if port is None:
        return None
    context = None
    if settings.tls.enabled:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls.cert_file, settings.tls.key_file)
    return MetricsEndpoint(metrics, settings.host, port, context)


def build_server(
    settings: Settings, services: Sequence[Service], metrics: ServiceMetrics | None = None
) -> ForgelineServer:
    """Creates and binds a server hosting `services` plus health and reflection.

    Binds `settings.host:settings.port`; port 0 picks a free one (returned in `.port`).
    The metrics endpoint binds when the server starts (`.metrics_port`).

    Args:
        settings: The service's settings.
        services: What to host.
        metrics: The server's metrics, when the service registered its own in them first.

    Raises:
        RuntimeError: the address could not be bound.
        ValueError: the metrics port setting is out of range.
    """
    metrics = metrics or ServiceMetrics()
    # Telemetry is outermost, so it sees every call as the caller does; auth runs next so
    # an unauthenticated caller reaches no servicer code.
    interceptors: list[grpc.aio.ServerInterceptor] = [
        TelemetryInterceptor(metrics, settings.service.value)
    ]
    if settings.token:
        interceptors.append(BearerAuthInterceptor(settings.token))
    interceptors.append(ErrorInterceptor())
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
            # One connection cannot hog the server with streams...
            ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
            # ...dead peers are found (pings after 2 idle minutes, 20 s to answer)...
            ("grpc.keepalive_time_ms", 120_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            # ...and clients may ping at most every 30 s (more is answered with GOAWAY).
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 30_000),
            ("grpc.http2.max_ping_strikes", 2),
        ],
        # Beyond this many calls in flight, new ones get RESOURCE_EXHAUSTED at once.
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in services:
        service.register(server)
    names = [s.name for s in services]
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"{settings.host}:{settings.port}"
    if settings.tls.enabled:
        port = server.add_secure_port(address, _credentials(settings))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    return ForgelineServer(
        server, port, health_servicer, names, metrics, _metrics_endpoint(settings, metrics)
    )


class Offloaded:
    """Runs a blocking object's methods in a thread pool: `await offloaded.method(...)`.

    Servicers wrap their SQL-backed cores in it so a slow query never stalls the event loop
    that is streaming other calls' bytes.
    """

    def __init__(self, target: Any, executor: Executor | None = None):
        self._target = target
        self._executor = executor

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._target, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(method, *args, **kwargs)
            )

        return call


async def serve(server: ForgelineServer, settings: Settings) -> None:
    """Starts `server` and blocks until SIGTERM or SIGINT, then shuts down gracefully.

    Once the server answers calls, one line `<service> listening on <host>:<port>` goes to
    standard output, so scripts that start a service on port 0 can read where it is; a
    line `<service> metrics on <host>:<port>` comes first when metrics are served.
    """
    await server.start()
    if server.metrics_port is not None:
        print(f"{settings.service.value} metrics on {settings.host}:{server.metrics_port}")
    print(f"{settings.service.value} listening on {settings.host}:{server.port}", flush=True)
    log.info(
        "%s listening on %s:%d (tls=%s, auth=%s, metrics port %s)",
        settings.service.value,
        settings.host,
        server.port,
        settings.tls.enabled,
        bool(settings.token),
        server.metrics_port or "off",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down %s (grace %.1fs)", settings.service.value, settings.grace_seconds)
    await server.stop(settings.grace_seconds)
