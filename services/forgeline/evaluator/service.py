"""gRPC server of the evaluator.

The contract is served, but every RPC answers UNIMPLEMENTED until the evaluator gets its runner;
it will then plug into the shared job machinery (`forgeline.common.job_service`) as the
trainer does.
"""

from __future__ import annotations

from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings
from forgeline.v1 import evaluator_pb2, evaluator_pb2_grpc

SERVICE_NAME = evaluator_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


def create_server(settings: Settings) -> tuple[ForgelineServer, int]:
    """Builds and binds the evaluator server; returns it and its port."""
    servicer = evaluator_pb2_grpc.EvaluatorServiceServicer()
    server = build_server(
        settings,
        [
            Service(
                SERVICE_NAME,
                lambda s: evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server(servicer, s),
            )
        ],
    )
    return server, server.port
