"""gRPC servicer of the quantizer: a thin layer over the shared job machinery."""

from __future__ import annotations

from forgeline.common.job_service import JobRpcs, build_job_server
from forgeline.common.jobs import Runner
from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings
from forgeline.v1 import common_pb2, quantizer_pb2, quantizer_pb2_grpc

SERVICE_NAME = quantizer_pb2.DESCRIPTOR.services_by_name["QuantizerService"].full_name


class QuantizerServicer(quantizer_pb2_grpc.QuantizerServiceServicer):
    """Converts requests to calls on the shared job RPCs."""

    def __init__(self, jobs: JobRpcs):
        self.jobs = jobs

    async def SubmitQuantizeJob(self, request, context):
        """Validates and queues a job."""
        return await self.jobs.submit(request)

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


def create_server(settings: Settings, runner: Runner | None = None) -> tuple[ForgelineServer, int]:
    """Builds and binds the quantizer server; returns it and its port.

    Without a runner the contract is served but every RPC answers UNIMPLEMENTED.
    """
    if runner is None:
        base = quantizer_pb2_grpc.QuantizerServiceServicer()
        server = build_server(
            settings,
            [
                Service(
                    SERVICE_NAME,
                    lambda s: quantizer_pb2_grpc.add_QuantizerServiceServicer_to_server(base, s),
                )
            ],
        )
        return server, server.port
    server = build_job_server(
        settings,
        service_name=SERVICE_NAME,
        add_servicer=quantizer_pb2_grpc.add_QuantizerServiceServicer_to_server,
        make_servicer=QuantizerServicer,
        pb=quantizer_pb2,
        noun="Quantize",
        kind=common_pb2.JOB_KIND_QUANTIZE,
        spec_type=quantizer_pb2.QuantizeJobSpec,
        runner=runner,
    )
    return server, server.port
