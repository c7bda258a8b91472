"""gRPC servicer of the inference service (engines arrive with the vLLM integration)."""

from __future__ import annotations

from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings
from forgeline.v1 import inference_pb2, inference_pb2_grpc

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def create_server(settings: Settings) -> tuple[ForgelineServer, int]:
    """Builds and binds the inference server; its RPCs answer UNIMPLEMENTED for now."""
    servicer = inference_pb2_grpc.InferenceServiceServicer()
    server = build_server(
        settings,
        [
            Service(
                SERVICE_NAME,
                lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, s),
            )
        ],
    )
    return server, server.port
