"""The standard `grpc.health.v1` check every Forgeline service answers, without a token."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeline.client.channel import ChannelOptions, open_channel
from forgeline.client.status import raise_for_rpc_error


def check_health(
    address: str, service: str = "", *, tls: bool = False, ca_file: str = "", timeout: float = 5.0
) -> str:
    """Asks a server how it (or one of its services) is; returns the status, e.g. ``SERVING``.

    Args:
        address: ``host:port``.
        service: A full service name, e.g. ``forgeline.v1.RegistryService``; empty asks
            about the server as a whole.
        tls: Connect with TLS.
        ca_file: PEM CA bundle for TLS (system roots when empty).
        timeout: Seconds to wait for the answer.

    Raises:
        NotFound: the server does not host `service`.
        Unavailable: nothing answers at `address`.
        DeadlineExceeded: no answer within `timeout`.
    """
    options = ChannelOptions(tls=tls, ca_file=ca_file, retries=False)
    with open_channel(address, options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            raise_for_rpc_error(err)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
