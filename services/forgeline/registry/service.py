"""gRPC servicer of the registry service (the store arrives with the registry core)."""

from __future__ import annotations

from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings
from forgeline.v1 import registry_pb2, registry_pb2_grpc

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


def create_server(settings: Settings) -> tuple[ForgelineServer, int]:
    """Builds and binds the registry server; its RPCs answer UNIMPLEMENTED for now."""
    servicer = registry_pb2_grpc.RegistryServiceServicer()
    server = build_server(
        settings,
        [
            Service(
                SERVICE_NAME,
                lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, s),
            )
        ],
    )
    return server, server.port
