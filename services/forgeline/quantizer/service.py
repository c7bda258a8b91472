"""gRPC servicer of the quantizer: a thin layer over the planner and the job machinery.

SubmitQuantizeJob checks the spec against the registry first (off the event loop: it may
pull the source's config and the calibration data) and rejects it with every problem at
once; otherwise it stores the resolved spec (references pinned, defaults written) and
queues it for the `QuantizeRunner`, which runs it as one Ray task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from forgeline.client.cache import VersionCache
from forgeline.client.jobs import QUANTIZE_JOBS
from forgeline.common.job_service import JobRpcs, build_job_server
from forgeline.common.jobs import Runner
from forgeline.common.ray_cluster import RayCluster
from forgeline.common.server import ForgelineServer
from forgeline.common.settings import Settings
from forgeline.quantizer.planner import QuantizePlanner
from forgeline.quantizer.runner import QuantizeRunner
from forgeline.v1 import common_pb2, quantizer_pb2, quantizer_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = quantizer_pb2.DESCRIPTOR.services_by_name["QuantizerService"].full_name


class SpecValidator(Protocol):
    """What the servicer needs of a planner (the real `QuantizePlanner`, or a test's fake)."""

    gpus_available: bool
    memory_per_worker: int

    def validate(self, spec: quantizer_pb2.QuantizeJobSpec) -> quantizer_pb2.QuantizeJobSpec:
        """Returns the resolved spec to store, or raises with every problem."""
        ...


class QuantizerServicer(quantizer_pb2_grpc.QuantizerServiceServicer):
    """Converts requests to calls on the planner and the job RPCs."""

    def __init__(self, jobs: JobRpcs, planner: SpecValidator):
        self.jobs = jobs
        self.planner = planner

    async def SubmitQuantizeJob(self, request, context):
        """Checks the spec against the registry, then stores its resolved form and queues it."""
        resolved = await asyncio.to_thread(self.planner.validate, request.spec)
        return await self.jobs.submit(quantizer_pb2.SubmitQuantizeJobRequest(spec=resolved))

    async def GetQuantizeJob(self, request, context):
        """Returns a job and its spec."""
        return await self.jobs.get(request)

    async def ListQuantizeJobs(self, request, context):
        """Lists jobs, newest first."""
        return await self.jobs.list(request)

    async def CancelQuantizeJob(self, request, context):
        """Cancels a queued or running job."""
        return await self.jobs.cancel(request)

    async def WatchQuantizeJob(self, request, context):
        """Streams a job's events from a sequence number."""
        async for response in self.jobs.watch(request):
            yield response


def create_server(
    settings: Settings,
    *,
    planner: SpecValidator | None = None,
    runner: Runner | None = None,
) -> tuple[ForgelineServer, int]:
    """Builds and binds the quantizer server; returns it and its port.

    By default specs are checked against the registry of `settings` and jobs run on the
    Ray cluster at `settings.ray_address` (a local Ray when empty), which is joined when
    the server starts.

    Args:
        settings: The service's settings.
        planner: Checks specs instead of the registry-backed `QuantizePlanner`.
        runner: Runs jobs instead of the Ray-backed `QuantizeRunner`.
    """
    cache: VersionCache | None = None
    cluster: RayCluster | None = None
    if planner is None:
        cache = VersionCache.open(settings.cache_config())
        planner = QuantizePlanner(cache)
    if runner is None:
        cluster = RayCluster(settings.ray_address)
        runner = QuantizeRunner(cluster, settings.cache_config())
    server = build_job_server(
        settings,
        service_name=SERVICE_NAME,
        add_servicer=quantizer_pb2_grpc.add_QuantizerServiceServicer_to_server,
        make_servicer=lambda jobs: QuantizerServicer(jobs, planner),
        messages=QUANTIZE_JOBS,
        kind=common_pb2.JOB_KIND_QUANTIZE,
        runner=runner,
    )
    if cluster is not None:

        async def join_ray() -> None:
            resources = await asyncio.to_thread(cluster.resources)
            planner.gpus_available = resources.get("GPU", 0) > 0
            planner.memory_per_worker = int(resources.get("memory", 0))

        server.on_start.insert(0, join_ray)
        server.on_stop.append(lambda: asyncio.to_thread(cluster.shutdown))
    if cache is not None:
        server.on_stop.append(lambda: asyncio.to_thread(cache.close))
    server.components["planner"] = planner
    return server, server.port
