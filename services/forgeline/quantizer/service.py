"""gRPC server of the quantizer.

The contract is served, but every RPC answers UNIMPLEMENTED until the quantizer gets its runner;
it will then plug into the shared job machinery (`forgeline.common.job_service`) as the
trainer does.
"""

from __future__ import annotations

from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings
from forgeline.v1 import quantizer_pb2, quantizer_pb2_grpc

SERVICE_NAME = quantizer_pb2.DESCRIPTOR.services_by_name["QuantizerService"].full_name


def create_server(settings: Settings) -> tuple[ForgelineServer, int]:
    """Builds and binds the quantizer server; returns it and its port."""
    servicer = quantizer_pb2_grpc.QuantizerServiceServicer()
    server = build_server(
        settings,
        [
            Service(
                SERVICE_NAME,
                lambda s: quantizer_pb2_grpc.add_QuantizerServiceServicer_to_server(servicer, s),
            )
        ],
    )
    return server, server.port
