"""Every RPC of every service, called as a stranger would: no token, a wrong one, the right one.

The calls go over raw channels built from the contracts' descriptors (not the SDK), in
each method's own shape (unary or streaming either way), so a method that forgot the
bearer check, or a call shape the check does not cover, shows up as a bypass.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeline.inference.resolver import LocalResolver
from forgeline.v1 import (
    evaluator_pb2,
    inference_pb2,
    quantizer_pb2,
    registry_pb2,
    trainer_pb2,
)
from tests.common.fakes import AcceptingPlanner, GatedRunner
from tests.conftest import serving
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

TOKEN = "the-right-token"


def _servers(settings_for, tmp_path) -> dict:
    from forgeline.evaluator.service import create_server as evaluator
    from forgeline.inference.service import create_server as inference
    from forgeline.quantizer.service import create_server as quantizer
    from forgeline.registry.service import create_server as registry
    from forgeline.trainer.service import create_server as trainer

    def settings(name):
        return settings_for(name, token=TOKEN)

    return {
        registry_pb2: lambda: registry(settings("registry"))[0],
        trainer_pb2: lambda: trainer(
            settings("trainer"), planner=AcceptingPlanner(), runner=GatedRunner()
        )[0],
        quantizer_pb2: lambda: quantizer(settings("quantizer"))[0],
        evaluator_pb2: lambda: evaluator(settings("evaluator"))[0],
        inference_pb2: lambda: inference(
            settings("inference"),
            resolver=LocalResolver({"base": tmp_path}),
            engine_factory=FakeEngineFactory(),
        )[0],
    }


def _call(channel: grpc.Channel, method, metadata) -> grpc.StatusCode:
    """Calls `method` (a MethodDescriptor) with an empty request; returns the status."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = _message_class(method.input_type)
    response_class = _message_class(method.output_type)
    kwargs = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }

    def requests() -> Iterator:
        yield request_class()

    try:
        if method.client_streaming and method.server_streaming:
            list(channel.stream_stream(path, **kwargs)(requests(), metadata=metadata, timeout=10))
        elif method.client_streaming:
            channel.stream_unary(path, **kwargs)(requests(), metadata=metadata, timeout=10)
        elif method.server_streaming:
            list(
                channel.unary_stream(path, **kwargs)(request_class(), metadata=metadata, timeout=10)
            )
        else:
            channel.unary_unary(path, **kwargs)(request_class(), metadata=metadata, timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _message_class(descriptor):
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


CREDENTIALS = {
    "none": (),
    "wrong": (("authorization", "Bearer not-the-token"),),
    "malformed": (("authorization", TOKEN),),
    "right": (("authorization", f"Bearer {TOKEN}"),),
}


def test_no_method_of_any_service_answers_without_the_right_token(settings_for, tmp_path):
    tried, bypasses = 0, []
    for module, factory in _servers(settings_for, tmp_path).items():
        (service,) = module.DESCRIPTOR.services_by_name.values()
        with serving(factory) as server, grpc.insecure_channel(server.address) as channel:
            for method in service.methods:
                for credential, metadata in CREDENTIALS.items():
                    tried += 1
                    code = _call(channel, method, metadata)
                    refused = code == grpc.StatusCode.UNAUTHENTICATED
                    if refused != (credential != "right"):
                        bypasses.append((service.name, method.name, credential, code))
            # Health stays open, so probes need no token.
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert bypasses == []
    methods = sum(
        len(m.DESCRIPTOR.services_by_name[n].methods)
        for m in (registry_pb2, trainer_pb2, quantizer_pb2, evaluator_pb2, inference_pb2)
        for n in m.DESCRIPTOR.services_by_name
    )
    assert tried == methods * len(CREDENTIALS)
