"""gRPC servicer of the trainer: a thin layer over the planner and the job machinery.

SubmitTrainJob plans the spec first (off the event loop: it reads the dataset and the
model's headers) and rejects it with every problem at once; otherwise it stores the
resolved spec (defaults filled, references pinned to version numbers) and queues it for
the `TrainRunner`, which runs it on Ray. PlanTrainJob returns the same plan without
queueing anything.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from forgeline.client.cache import VersionCache
from forgeline.client.jobs import TRAIN_JOBS
from forgeline.common.job_service import JobRpcs, build_job_server
from forgeline.common.jobs import Runner
from forgeline.common.ray_cluster import loopback_host
from forgeline.common.server import ForgelineServer
from forgeline.common.settings import Settings
from forgeline.trainer.config.defaults import cpu_has_bf16
from forgeline.trainer.launcher import RayLauncher
from forgeline.trainer.plan import Plan, Planner
from forgeline.trainer.runner import TrainRunner
from forgeline.trainer.storage import TrainStorage
from forgeline.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


class SpecPlanner(Protocol):
    """What the servicer needs of a planner (the real `Planner`, or a test's fake)."""

    gpus_available: bool
    cpu_bf16: bool
    memory_per_worker: int

    def validate(self, spec: trainer_pb2.TrainJobSpec) -> trainer_pb2.TrainJobSpec:
        """Returns the resolved spec to store, or raises InvalidArgument with every problem."""
        ...

    def plan(self, spec: trainer_pb2.TrainJobSpec) -> Plan:
        """Checks a spec against its model and data and estimates the run."""
        ...


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Converts requests to calls on the planner and the job RPCs."""

    def __init__(self, jobs: JobRpcs, planner: SpecPlanner):
        self.jobs = jobs
        self.planner = planner

    async def SubmitTrainJob(self, request, context):
        """Plans the spec, then stores its resolved form and queues it."""
        resolved = await asyncio.to_thread(self.planner.validate, request.spec)
        return await self.jobs.submit(trainer_pb2.SubmitTrainJobRequest(spec=resolved))

    async def GetTrainJob(self, request, context):
        """Returns a job and its spec."""
        return await self.jobs.get(request)

    async def ListTrainJobs(self, request, context):
        """Lists jobs, newest first."""
        return await self.jobs.list(request)

    async def CancelTrainJob(self, request, context):
        """Cancels a queued or running job."""
        return await self.jobs.cancel(request)

    async def WatchTrainJob(self, request, context):
        """Streams a job's events from a sequence number."""
        async for response in self.jobs.watch(request):
            yield response

    async def PlanTrainJob(self, request, context):
        """Checks a spec against its model and data and estimates the run."""
        plan = await asyncio.to_thread(self.planner.plan, request.spec)
        return plan.to_pb()


def create_server(
    settings: Settings,
    *,
    planner: SpecPlanner | None = None,
    runner: Runner | None = None,
) -> tuple[ForgelineServer, int]:
    """Builds and binds the trainer server; returns it and its port.

    By default jobs are planned against the registry of `settings` and run on the Ray
    cluster at `settings.ray_address` (a local Ray when empty), which starts and stops
    with the server, keeping checkpoints in `settings.train_storage`.

    Args:
        settings: The service's settings (registry address, Ray address, home, ...).
        planner: Plans specs instead of the registry-backed `Planner`.
        runner: Runs jobs instead of the Ray-backed `TrainRunner`.

    Raises:
        ValueError: `FORGELINE_TRAIN_STORAGE` is a relative path.
    """
    storage = TrainStorage(settings.train_storage)  # checked before anything opens
    cache: VersionCache | None = None
    launcher: RayLauncher | None = None
    if planner is None or runner is None:
        cache = VersionCache.open(settings.cache_config())
    if runner is None:
        launcher = RayLauncher(settings.ray_address)
        runner = TrainRunner(cache, launcher, settings.cache_config(), storage)
    if planner is None:
        planner = Planner(cache)
    server = build_job_server(
        settings,
        service_name=SERVICE_NAME,
        add_servicer=trainer_pb2_grpc.add_TrainerServiceServicer_to_server,
        make_servicer=lambda jobs: TrainerServicer(jobs, planner),
        messages=TRAIN_JOBS,
        kind=common_pb2.JOB_KIND_TRAIN,
        runner=runner,
    )
    if launcher is not None:
        server.on_start.insert(0, _start_ray(launcher, planner, settings))
        server.on_stop.append(lambda: asyncio.to_thread(launcher.shutdown))
    if cache is not None:
        server.on_stop.append(lambda: asyncio.to_thread(cache.close))
    server.components["planner"] = planner
    return server, server.port


def _start_ray(launcher: RayLauncher, planner: SpecPlanner, settings: Settings):
    """A start hook: joins (or starts) Ray and tells the planner what the cluster has.

    Warns when the cluster has nodes on other machines that the settings leave workers
    unable to serve: a loopback registry address, or no shared training storage.
    """

    async def start() -> None:
        resources = await asyncio.to_thread(launcher.resources)
        planner.cpu_bf16 = await asyncio.to_thread(launcher.probe, cpu_has_bf16)
        planner.gpus_available = resources.get("GPU", 0) > 0
        planner.memory_per_worker = int(resources.get("memory", 0))
        try:
            other_hosts = await asyncio.to_thread(launcher.other_hosts)
        except Exception:  # advice only: never keeps the service from starting
            log.debug("could not list the Ray nodes", exc_info=True)
            other_hosts = []
        for warning in _remote_node_warnings(other_hosts, settings):
            log.warning("%s", warning)

    return start


def _remote_node_warnings(other_hosts: list[str], settings: Settings) -> list[str]:
    """What keeps workers on `other_hosts` (other machines) from training a job."""
    if not other_hosts:
        return []
    nodes = ", ".join(other_hosts)
    registry = settings.cache_config().registry
    warnings = []
    if loopback_host(registry):
        warnings.append(
            f"Ray nodes on other machines ({nodes}) cannot reach the registry at {registry}: "
            "set FORGELINE_REGISTRY_ADDRESS to an address they reach (and FORGELINE_HOST on "
            "the registry so that it listens there)"
        )
    if not settings.train_storage:
        warnings.append(
            f"Ray nodes on other machines ({nodes}) would write checkpoints to their own "
            "disks: set FORGELINE_TRAIN_STORAGE to a folder every node shares or a URI "
            "(s3://bucket/prefix)"
        )
    return warnings
