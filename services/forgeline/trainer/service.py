"""gRPC servicer of the trainer: a thin layer over the shared job machinery."""

from __future__ import annotations

from forgeline.common.job_service import JobRpcs, build_job_server
from forgeline.common.jobs import Runner
from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings
from forgeline.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Converts requests to calls on the shared job RPCs."""

    def __init__(self, jobs: JobRpcs):
        self.jobs = jobs

    async def SubmitTrainJob(self, request, context):
        """Validates and queues a job."""
        return await self.jobs.submit(request)

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


def create_server(settings: Settings, runner: Runner | None = None) -> tuple[ForgelineServer, int]:
    """Builds and binds the trainer server; returns it and its port.

    Without a runner the contract is served but every RPC answers UNIMPLEMENTED.
    """
    if runner is None:
        base = trainer_pb2_grpc.TrainerServiceServicer()
        server = build_server(
            settings,
            [
                Service(
                    SERVICE_NAME,
                    lambda s: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(base, s),
                )
            ],
        )
        return server, server.port
    server = build_job_server(
        settings,
        service_name=SERVICE_NAME,
        add_servicer=trainer_pb2_grpc.add_TrainerServiceServicer_to_server,
        make_servicer=TrainerServicer,
        pb=trainer_pb2,
        noun="Train",
        kind=common_pb2.JOB_KIND_TRAIN,
        spec_type=trainer_pb2.TrainJobSpec,
        runner=runner,
    )
    return server, server.port
