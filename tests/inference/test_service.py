"""The inference servicer over a real gRPC channel, with fake engines behind the core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeline.client import ChannelOptions, InferenceClient
from forgeline.client.exceptions import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from forgeline.client.health import check_health
from forgeline.inference.resolver import LocalModel, LocalResolver
from forgeline.inference.service import SERVICE_NAME, create_server
from forgeline.v1 import inference_pb2, registry_pb2
from tests.conftest import serving
from tests.helpers import wait_for
from tests.inference.fakes import BASE_WORDS, FakeEngineFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def factory() -> FakeEngineFactory:
    return FakeEngineFactory(step=0.02)


@pytest.fixture
def server(tmp_path: Path, settings_for, factory):
    base = tmp_path / "base"
    base.mkdir()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    resolver = LocalResolver(
        {
            "base": base,
            "lora": LocalModel(adapter, registry_pb2.VERSION_KIND_ADAPTER, ["base"]),
        }
    )
    settings = settings_for("inference", token="secret")
    with serving(
        lambda: create_server(settings, resolver=resolver, engine_factory=factory)[0]
    ) as thread:
        yield thread


@pytest.fixture
def client(server):
    with InferenceClient(server.address, ChannelOptions(token="secret")) as c:
        yield c


def sampling(**fields) -> inference_pb2.SamplingParams:
    return inference_pb2.SamplingParams(**fields)


def test_models_adapters_and_generation_over_grpc(client):
    served = client.load_model(
        "base", engine=inference_pb2.EngineOptions(enable_lora=True, max_model_len=64)
    )
    assert served.state == inference_pb2.SERVED_MODEL_STATE_READY and served.lora_enabled
    adapter = client.load_adapter("lora", served_name="my-lora")
    assert adapter.parent == "base" and adapter.ref.name == "lora"
    text = "".join(client.stream_text("base", "a b", sampling=sampling(max_tokens=4)))
    assert text == " ".join(BASE_WORDS[:4])
    responses = list(
        client.generate(
            inference_pb2.GenerateRequest(
                model="my-lora", prompt="a b", request_id="req-1", sampling=sampling(max_tokens=2)
            )
        )
    )
    assert {r.request_id for r in responses} == {"req-1"}
    assert responses[-1].usage.completion_tokens == 2
    assert responses[-1].chunks[-1].finish_reason == inference_pb2.FINISH_REASON_LENGTH
    assert client.tokenize("base", messages=[("user", "hi there")]).count == 4
    assert [m.name for m in client.list_models()] == ["base", "my-lora"]
    client.unload_adapter("my-lora")
    client.unload_model("base")
    assert client.list_models() == []


def test_errors_arrive_as_domain_exceptions_with_fields(client):
    with pytest.raises(NotFound):
        list(client.stream_text("nope", "x"))
    client.load_model("base")
    with pytest.raises(AlreadyExists):
        client.load_model("base")
    with pytest.raises(InvalidArgument) as err:
        list(client.stream_text("base", "x", sampling=sampling(top_p=3, max_tokens=1000)))
    assert [v.field for v in err.value.violations] == ["sampling.top_p"]
    with pytest.raises(InvalidArgument) as err:
        list(client.stream_text("base", "x", sampling=sampling(max_tokens=1000)))
    assert [v.field for v in err.value.violations] == ["sampling.max_tokens"]
    with pytest.raises(FailedPrecondition) as err:
        client.load_adapter("lora")
    assert err.value.type == "LORA_DISABLED"
    with pytest.raises(InvalidArgument):
        client.load_model(inference_pb2.LoadModelRequest().ref)


def test_the_token_is_required(server):
    with InferenceClient(server.address) as anonymous, pytest.raises(Unauthenticated):
        anonymous.list_models()


def test_a_cancelled_stream_aborts_the_request_in_the_engine(client, factory):
    client.load_model("base")
    stream = client.generate(
        inference_pb2.GenerateRequest(
            model="base", prompt="x", request_id="gone", sampling=sampling(max_tokens=60)
        )
    )
    next(stream)
    engine = factory.engines["base"]
    assert engine.unfinished_requests() == 1
    stream.close()  # the caller stops reading: the SDK cancels the call
    # Closing the engine's stream before it finishes is how vLLM aborts a request.
    wait_for(lambda: "gone" in engine.closed_early + engine.aborted, timeout=5)
    assert set(engine.closed_early + engine.aborted) == {"gone"}  # that request, only it
    wait_for(lambda: engine.unfinished_requests() == 0, timeout=5)
    wait_for(lambda: client.list_models()[0].running_requests == 0, timeout=5)


def test_a_refused_duplicate_request_id_leaves_the_running_request_alone(server, client, factory):
    client.load_model("base")
    first = client.generate(
        inference_pb2.GenerateRequest(
            model="base", prompt="x", request_id="dup", sampling=sampling(max_tokens=60)
        )
    )
    next(first)
    with pytest.raises(AlreadyExists):
        list(
            client.generate(
                inference_pb2.GenerateRequest(model="base", prompt="x", request_id="dup")
            )
        )
    with pytest.raises(NotFound):
        list(
            client.generate(
                inference_pb2.GenerateRequest(model="nope", prompt="x", request_id="dup")
            )
        )
    with pytest.raises(InvalidArgument):
        list(client.generate(inference_pb2.GenerateRequest(model="base", request_id="dup")))
    engine = factory.engines["base"]
    core = server.server.components["core"]
    # Give a wrongly scheduled abort of the refused calls time to land.
    next(first)
    next(first)
    assert engine.aborted == [] and core.is_running("dup")
    assert next(first).chunks[0].text  # still streaming
    assert server.run(core.abort("dup")) is True  # abortable by id
    rest = list(first)
    assert rest[-1].chunks[-1].finish_reason == inference_pb2.FINISH_REASON_ABORT
    assert engine.aborted == ["dup"]


def test_a_load_cancelled_by_its_deadline_leaves_nothing_behind(client, factory):
    factory.start_seconds = 1.0
    with pytest.raises(DeadlineExceeded):
        client.load_model("base", timeout=0.3)
    wait_for(lambda: client.list_models() == [], timeout=5)
    wait_for(lambda: [e.stopped for e in factory.started] == [True], timeout=5)
    factory.start_seconds = 0
    assert client.load_model("base").state == inference_pb2.SERVED_MODEL_STATE_READY


def test_health_is_not_serving_while_a_model_is_failed(server, client, factory):
    server.server.components["core"].watch_seconds = 0.02
    assert check_health(server.address, SERVICE_NAME) == "SERVING"
    client.load_model("base")
    factory.engines["base"].dead = True
    wait_for(
        lambda: client.list_models()[0].state == inference_pb2.SERVED_MODEL_STATE_FAILED,
        timeout=5,
    )
    assert "dead" in client.list_models()[0].error
    assert check_health(server.address, SERVICE_NAME) == "NOT_SERVING"
    assert check_health(server.address) == "SERVING"  # the process itself is fine
    assert client.load_model("base").state == inference_pb2.SERVED_MODEL_STATE_READY
    assert check_health(server.address, SERVICE_NAME) == "SERVING"
    factory.engines["base"].dead = True
    wait_for(lambda: check_health(server.address, SERVICE_NAME) == "NOT_SERVING", timeout=5)
    client.unload_model("base")
    assert check_health(server.address, SERVICE_NAME) == "SERVING"
