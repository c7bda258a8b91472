"""gRPC servicer of the evaluator: a thin layer over the planner and the job machinery.

SubmitEvalJob checks the spec first (off the event loop: it reads every data file), picking
suites from the target when the spec names none, and rejects it with every problem at
once; otherwise it stores the resolved spec and queues it for the `EvalRunner`.
GetEvalReport returns a succeeded job's report.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.inference import InferenceClient
from forgeline.client.jobs import EVAL_JOBS
from forgeline.common.job_service import JobRpcs, build_job_server
from forgeline.common.jobs import Runner
from forgeline.common.ray_cluster import RayCluster
from forgeline.common.server import ForgelineServer
from forgeline.common.settings import ServiceName, Settings
from forgeline.evaluator.planner import EvalPlanner
from forgeline.evaluator.runner import EvalRunner, read_report
from forgeline.evaluator.served import ServedScorer
from forgeline.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc, inference_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = evaluator_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


class SpecValidator(Protocol):
    """What the servicer needs of a planner (the real `EvalPlanner`, or a test's fake)."""

    def validate(self, spec: evaluator_pb2.EvalJobSpec) -> evaluator_pb2.EvalJobSpec:
        """Returns the resolved spec to store, or raises with every problem."""
        ...


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServiceServicer):
    """Converts requests to calls on the planner, the job RPCs and the reports."""

    def __init__(self, jobs: JobRpcs, planner: SpecValidator):
        self.jobs = jobs
        self.planner = planner

    async def SubmitEvalJob(self, request, context):
        """Checks the spec and its data, then stores its resolved form and queues it."""
        resolved = await asyncio.to_thread(self.planner.validate, request.spec)
        return await self.jobs.submit(evaluator_pb2.SubmitEvalJobRequest(spec=resolved))

    async def GetEvalJob(self, request, context):
        """Returns a job and its spec."""
        return await self.jobs.get(request)

    async def ListEvalJobs(self, request, context):
        """Lists jobs, newest first."""
        return await self.jobs.list(request)

    async def CancelEvalJob(self, request, context):
        """Cancels a queued or running job."""
        return await self.jobs.cancel(request)

    async def WatchEvalJob(self, request, context):
        """Streams a job's events from a sequence number."""
        async for response in self.jobs.watch(request):
            yield response

    async def GetEvalReport(self, request, context):
        """Returns a succeeded job's report."""
        manager = self.jobs.manager
        job, _ = await asyncio.to_thread(manager.get, request.job_id)
        if job.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise exceptions.FailedPrecondition(
                f"job {job.id} has not succeeded; its report is written when it does",
                subject=f"jobs/{job.id}",
                type="JOB_STATE",
            )
        report = await asyncio.to_thread(read_report, manager.work_root / job.id)
        return evaluator_pb2.GetEvalReportResponse(report=report)


def create_server(
    settings: Settings,
    *,
    planner: SpecValidator | None = None,
    runner: Runner | None = None,
) -> tuple[ForgelineServer, int]:
    """Builds and binds the evaluator server; returns it and its port.

    By default specs are checked against the registry of `settings`, registry versions are
    scored on the Ray cluster at `settings.ray_address` (a local Ray when empty) and served
    models through the inference service of `settings`.

    Args:
        settings: The service's settings.
        planner: Checks specs instead of the registry-backed `EvalPlanner`.
        runner: Runs jobs instead of the `EvalRunner`.
    """
    inference_address = settings.addresses[ServiceName.INFERENCE]
    cache = VersionCache.open(settings.cache_config())
    cluster: RayCluster | None = None

    def served_names() -> list[str]:
        options = settings.channel_options(retries=False)
        with InferenceClient(inference_address, options) as client:
            return [
                m.name
                for m in client.list_models()
                if m.state == inference_pb2.SERVED_MODEL_STATE_READY
            ]

    planner = planner or EvalPlanner(cache, served_names)
    if runner is None:
        cluster = RayCluster(settings.ray_address)
        served = ServedScorer(inference_address, settings.channel_options())
        runner = EvalRunner(cache, cluster, settings.cache_config(), served)
    server = build_job_server(
        settings,
        service_name=SERVICE_NAME,
        add_servicer=evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server,
        make_servicer=lambda jobs: EvaluatorServicer(jobs, planner),
        messages=EVAL_JOBS,
        kind=common_pb2.JOB_KIND_EVALUATE,
        runner=runner,
    )
    if cluster is not None:
        server.on_stop.append(lambda: asyncio.to_thread(cluster.shutdown))
    server.on_stop.append(lambda: asyncio.to_thread(cache.close))
    server.components["planner"] = planner
    return server, server.port
