"""The error interceptor's mapping and bearer-token auth, over a real server and channel."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions, open_channel
from forgeline.client.jobs import TrainerClient
from forgeline.common.server import Service, build_server
from forgeline.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.conftest import serving

pytestmark = pytest.mark.integration

NO_RETRY = ChannelOptions(retries=False)

ERRORS: dict[str, Exception] = {
    "not-found": exceptions.NotFound("job", "job-x"),
    "exists": exceptions.AlreadyExists("model", "m"),
    "invalid": exceptions.InvalidArgument.from_violations(
        [
            exceptions.FieldViolation("spec.tuner.rank", "must be positive"),
            exceptions.FieldViolation("spec.base_model.name", "is required"),
        ]
    ),
    "precondition": exceptions.FailedPrecondition(
        "version is PENDING", "models/m/1", "VERSION_STATE"
    ),
    "exhausted": exceptions.ResourceExhausted("slow down", retry_after=2.5),
    "unauthenticated": exceptions.Unauthenticated("who are you"),
    "denied": exceptions.PermissionDenied("not yours"),
    "aborted": exceptions.Aborted("lost a race"),
    "unavailable": exceptions.Unavailable("engine down"),
    "boom": RuntimeError("secret detail"),
}
CODES = {
    "not-found": grpc.StatusCode.NOT_FOUND,
    "exists": grpc.StatusCode.ALREADY_EXISTS,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "denied": grpc.StatusCode.PERMISSION_DENIED,
    "aborted": grpc.StatusCode.ABORTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "boom": grpc.StatusCode.INTERNAL,
}


class RaisingTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    """Raises the error named by the job id, from a unary and from a streaming method."""

    async def GetTrainJob(self, request, context):
        raise ERRORS[request.job_id]

    async def WatchTrainJob(self, request, context):
        yield trainer_pb2.WatchTrainJobResponse(event=common_pb2.JobEvent(seq=1))
        raise ERRORS[request.job_id]


def _factory(settings):
    servicer = RaisingTrainer()
    return lambda: build_server(
        settings,
        [
            Service(
                "forgeline.v1.TrainerService",
                lambda s: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, s),
            )
        ],
    )


@pytest.fixture
def server(settings_for):
    with serving(_factory(settings_for("trainer"))) as running:
        yield running


def _details(err: grpc.RpcError) -> dict[type, object]:
    found = {}
    for detail in rpc_status.from_call(err).details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.ResourceInfo,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                msg = kind()
                detail.Unpack(msg)
                found[kind] = msg
    return found


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_each_domain_error_maps_to_its_status(server, name):
    stub = trainer_pb2_grpc.TrainerServiceStub(open_channel(server.address, NO_RETRY))
    with pytest.raises(grpc.RpcError) as info:
        stub.GetTrainJob(trainer_pb2.GetTrainJobRequest(job_id=name), timeout=10)
    assert info.value.code() == CODES[name]
    if name == "boom":
        assert "RuntimeError" in info.value.details()
        assert "secret detail" not in info.value.details()
        return
    details = _details(info.value)
    assert details[error_details_pb2.ErrorInfo].reason == type(ERRORS[name]).__name__


def test_invalid_argument_lists_every_field(server):
    stub = trainer_pb2_grpc.TrainerServiceStub(open_channel(server.address, NO_RETRY))
    with pytest.raises(grpc.RpcError) as info:
        stub.GetTrainJob(trainer_pb2.GetTrainJobRequest(job_id="invalid"), timeout=10)
    bad = _details(info.value)[error_details_pb2.BadRequest]
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("spec.tuner.rank", "must be positive"),
        ("spec.base_model.name", "is required"),
    ]


def test_precondition_resource_and_retry_details(server):
    stub = trainer_pb2_grpc.TrainerServiceStub(open_channel(server.address, NO_RETRY))
    cases = {
        "precondition": error_details_pb2.PreconditionFailure,
        "not-found": error_details_pb2.ResourceInfo,
        "exhausted": error_details_pb2.RetryInfo,
    }
    got = {}
    for job_id, kind in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            stub.GetTrainJob(trainer_pb2.GetTrainJobRequest(job_id=job_id), timeout=10)
        got[job_id] = _details(info.value)[kind]
    assert got["precondition"].violations[0].subject == "models/m/1"
    assert got["precondition"].violations[0].type == "VERSION_STATE"
    assert got["not-found"].resource_type == "job"
    assert got["not-found"].resource_name == "job-x"
    assert got["exhausted"].retry_delay.ToMilliseconds() == 2500


def test_streaming_errors_are_mapped_after_partial_output(server):
    stub = trainer_pb2_grpc.TrainerServiceStub(open_channel(server.address, NO_RETRY))
    received = []
    with pytest.raises(grpc.RpcError) as info:
        for resp in stub.WatchTrainJob(trainer_pb2.WatchTrainJobRequest(job_id="invalid")):
            received.append(resp.event.seq)
    assert received == [1]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unimplemented_methods_answer_unimplemented(server):
    stub = trainer_pb2_grpc.TrainerServiceStub(open_channel(server.address, NO_RETRY))
    with pytest.raises(grpc.RpcError) as info:
        stub.PlanTrainJob(trainer_pb2.PlanTrainJobRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_client_sdk_rebuilds_domain_exceptions(server):
    client = TrainerClient(server.address, ChannelOptions(retries=False))
    with pytest.raises(exceptions.InvalidArgument) as invalid:
        client.get("invalid")
    assert [v.field for v in invalid.value.violations] == [
        "spec.tuner.rank",
        "spec.base_model.name",
    ]
    with pytest.raises(exceptions.NotFound) as missing:
        client.get("not-found")
    assert (missing.value.resource_type, missing.value.name) == ("job", "job-x")
    with pytest.raises(exceptions.ResourceExhausted) as exhausted:
        client.get("exhausted")
    assert exhausted.value.retry_after == pytest.approx(2.5)
    with pytest.raises(exceptions.FailedPrecondition) as pre:
        client.get("precondition")
    assert pre.value.subject == "models/m/1"


# -- auth ---------------------------------------------------------------------------------


@pytest.fixture
def secured(settings_for):
    with serving(_factory(settings_for("trainer", token="s3cret"))) as running:
        yield running


@pytest.mark.parametrize("token", ["", "wrong", "s3cret-but-longer"])
def test_missing_or_wrong_token_is_unauthenticated(secured, token):
    client = TrainerClient(secured.address, ChannelOptions(token=token, retries=False))
    with pytest.raises(exceptions.Unauthenticated) as info:
        client.get("not-found")
    assert ("missing" if not token else "invalid") in info.value.message


def test_wrong_token_is_rejected_on_streams_too(secured):
    client = TrainerClient(secured.address, ChannelOptions(token="wrong", retries=False))
    with pytest.raises(exceptions.Unauthenticated):
        list(client.watch("invalid"))


def test_right_token_reaches_the_servicer(secured):
    client = TrainerClient(secured.address, ChannelOptions(token="s3cret", retries=False))
    with pytest.raises(exceptions.NotFound):
        client.get("not-found")


def test_health_is_open_without_token(secured):
    stub = health_pb2_grpc.HealthStub(open_channel(secured.address))
    for service in ("", "forgeline.v1.TrainerService"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_health_reports_unknown_service(secured):
    stub = health_pb2_grpc.HealthStub(open_channel(secured.address))
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(health_pb2.HealthCheckRequest(service="nope.Service"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
