"""gRPC servicer of the trainer: a thin layer over the job machinery and the planner.

SubmitTrainJob plans the spec first (off the event loop: it reads the dataset and the
model's headers) and rejects it with every problem at once; otherwise it stores the
resolved spec (defaults filled, references pinned to version numbers) and queues it.
PlanTrainJob returns the same plan without queueing anything.
"""

from __future__ import annotations

import asyncio
import logging

from forgeline.client.exceptions import InvalidArgument
from forgeline.common.job_service import JobRpcs, build_job_server
from forgeline.common.jobs import Runner
from forgeline.common.server import ForgelineServer
from forgeline.common.settings import Settings
from forgeline.trainer.artifacts import RegistryAddress, RegistryArtifacts
from forgeline.trainer.config import check_spec
from forgeline.trainer.launcher import RayLauncher
from forgeline.trainer.plan import Planner
from forgeline.trainer.runner import TrainRunner
from forgeline.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Converts requests to calls on the job RPCs and the planner."""

    def __init__(self, jobs: JobRpcs, planner: Planner | None):
        self.jobs = jobs
        self.planner = planner

    async def SubmitTrainJob(self, request, context):
        """Plans the spec, then stores its resolved form and queues it."""
        if self.planner is None:
            return await self.jobs.submit(request)
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
        if self.planner is None:
            report = check_spec(request.spec)
            return trainer_pb2.PlanTrainJobResponse(
                resolved_spec=request.spec,
                warnings=report.warnings,
                problems=[
                    trainer_pb2.PlanProblem(field=p.field, description=p.description)
                    for p in report.problems
                ],
            )
        plan = await asyncio.to_thread(self.planner.plan, request.spec)
        return plan.to_pb()


def _spec_gate(planner: Planner):
    """The job manager's own gate: nothing is stored that fails the checks of the spec alone."""

    def validate(spec: trainer_pb2.TrainJobSpec) -> None:
        report = check_spec(spec, gpus_available=planner.gpus_available)
        if report.problems:
            raise InvalidArgument.from_violations(report.problems)

    return validate


def create_server(
    settings: Settings,
    runner: Runner | None = None,
    *,
    launcher: RayLauncher | None = None,
) -> tuple[ForgelineServer, int]:
    """Builds and binds the trainer server; returns it and its port.

    Args:
        settings: The service's settings (registry address, Ray address, home, ...).
        runner: Replaces the Ray runner and the planner (to test the job machinery alone).
        launcher: The Ray launcher to use (default: one for `settings.ray_address`).
    """
    planner: Planner | None = None
    artifacts: RegistryArtifacts | None = None
    if runner is None:
        where = RegistryAddress.from_settings(settings)
        artifacts = RegistryArtifacts(where)
        launcher = launcher or RayLauncher(settings.ray_address)
        runner = TrainRunner(artifacts, launcher, where)
        planner = Planner(artifacts)
    server = build_job_server(
        settings,
        service_name=SERVICE_NAME,
        add_servicer=trainer_pb2_grpc.add_TrainerServiceServicer_to_server,
        make_servicer=lambda jobs: TrainerServicer(jobs, planner),
        pb=trainer_pb2,
        noun="Train",
        kind=common_pb2.JOB_KIND_TRAIN,
        spec_type=trainer_pb2.TrainJobSpec,
        runner=runner,
        validate=_spec_gate(planner) if planner is not None else None,
    )
    if planner is not None and launcher is not None:

        async def start_ray() -> None:
            resources = await asyncio.to_thread(launcher.resources)
            planner.gpus_available = resources.get("GPU", 0) > 0
            planner.memory_per_worker = int(resources.get("memory", 0))

        async def stop_ray() -> None:
            if artifacts is not None:
                artifacts.close()
            await asyncio.to_thread(launcher.shutdown)

        server.on_start.insert(0, start_ray)
        server.on_stop.append(stop_ray)
        server.components["planner"] = planner
        server.components["launcher"] = launcher
    return server, server.port
