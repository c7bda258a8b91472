"""The asyncio SDK's `GenerateStream` against a real inference server on fake engines:
first message, iteration, cancellation, and failures as domain exceptions only.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import grpc
import pytest

from forgeline.client import ChannelOptions
from forgeline.client.aio import AsyncInferenceClient, GenerateStream
from forgeline.client.exceptions import (
    Cancelled,
    DeadlineExceeded,
    ForgelineError,
    Internal,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from forgeline.v1 import inference_pb2
from tests.gateway.conftest import aborted_requests, fake_inference
from tests.inference.fakes import BASE_WORDS, FakeEngine, FakeEngineFactory

pytestmark = pytest.mark.integration

TOKEN = "internal-token"


@pytest.fixture(scope="module")
def factory() -> FakeEngineFactory:
    return FakeEngineFactory()


@pytest.fixture(scope="module")
def inference(tmp_path_factory, factory):
    with fake_inference(tmp_path_factory.mktemp("inference"), factory, TOKEN) as thread:
        yield thread


@pytest.fixture
async def client(inference):
    options = ChannelOptions(token=TOKEN, retries=False)
    async with AsyncInferenceClient(inference.address, options) as client:
        yield client


@pytest.fixture
def engine(factory) -> FakeEngine:
    return factory.engines["base"]


@pytest.fixture
def slow_engine(engine):
    engine.step = 0.05
    yield engine
    engine.step = 0.0


def generate_request(request_id: str, max_tokens: int = 3, model: str = "base"):
    return inference_pb2.GenerateRequest(
        model=model,
        prompt="a b c",
        request_id=request_id,
        sampling=inference_pb2.SamplingParams(max_tokens=max_tokens),
    )


def text(responses) -> str:
    return "".join(chunk.text for response in responses for chunk in response.chunks)


async def eventually(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_first_then_iteration_yields_every_message_once(client):
    stream = client.generate(generate_request("first-then-all"))
    first = await stream.first()
    assert first is not None and first.request_id == "first-then-all"
    assert await stream.first() is first
    responses = [response async for response in stream]
    assert responses[0] is first
    assert text(responses) == " ".join(BASE_WORDS[:3])
    assert responses[-1].usage.completion_tokens == 3
    assert [response async for response in stream] == []


async def test_iteration_without_first_reads_the_whole_stream(client):
    responses = [r async for r in client.generate(generate_request("just-iterate"))]
    assert text(responses) == " ".join(BASE_WORDS[:3])


async def test_a_stream_that_ends_empty_has_no_first_message():
    class EmptyCall:
        async def read(self):
            return grpc.aio.EOF

        def cancel(self) -> bool:
            return False

    stream = GenerateStream(EmptyCall())
    assert await stream.first() is None
    assert [r async for r in stream] == []


async def test_cancel_aborts_the_engine_request(client, slow_engine):
    stream = client.generate(generate_request("cancel-me", max_tokens=50))
    first = await stream.first()
    assert "cancel-me" in slow_engine.running
    assert stream.cancel()
    await eventually(lambda: "cancel-me" in aborted_requests(slow_engine))
    received = []
    with pytest.raises(Cancelled):
        async for response in stream:
            received.append(response)
    assert received == [first]


async def test_leaving_the_context_cancels_the_stream(client, slow_engine):
    async with client.generate(generate_request("leave-me", max_tokens=50)) as stream:
        assert await anext(stream) is not None
    await eventually(lambda: "leave-me" in aborted_requests(slow_engine))


async def test_refusals_surface_as_domain_exceptions_from_first(client):
    with pytest.raises(NotFound):
        await client.generate(generate_request("unknown", model="nope")).first()
    with pytest.raises(InvalidArgument) as err:
        await client.generate(generate_request("too-long", max_tokens=10_000)).first()
    assert [v.field for v in err.value.violations] == ["sampling.max_tokens"]


async def test_the_token_is_sent_on_every_call(inference):
    async with AsyncInferenceClient(inference.address, ChannelOptions(retries=False)) as anon:
        with pytest.raises(Unauthenticated):
            await anon.generate(generate_request("anonymous")).first()
        with pytest.raises(Unauthenticated):
            await anon.list_models()


async def test_a_deadline_is_a_domain_exception(client, slow_engine):
    stream = client.generate(generate_request("too-slow", max_tokens=50), timeout=0.3)
    with pytest.raises(DeadlineExceeded) as err:
        async for _ in stream:
            pass
    assert not isinstance(err.value, grpc.RpcError)
    await eventually(lambda: "too-slow" in aborted_requests(slow_engine))


async def test_a_failure_mid_stream_is_internal(client, engine, monkeypatch):
    original = engine.generate

    async def fails_after_one_event(request, request_id, adapter=None):
        async with aclosing(original(request, request_id, adapter)) as events:
            async for event in events:
                yield event
                raise RuntimeError("the engine broke")

    monkeypatch.setattr(engine, "generate", fails_after_one_event)
    stream = client.generate(generate_request("breaks", max_tokens=5))
    assert await stream.first() is not None
    with pytest.raises(Internal) as err:
        async for _ in stream:
            pass
    assert err.value.status == "INTERNAL" and "RuntimeError" in err.value.message
    assert isinstance(err.value, ForgelineError)


async def test_unary_methods_are_typed(client):
    [model] = await client.list_models()
    assert model.name == "base" and model.state == inference_pb2.SERVED_MODEL_STATE_READY
    tokens = await client.tokenize(inference_pb2.TokenizeRequest(model="base", text="a b c"))
    assert tokens.count == 3
    with pytest.raises(NotFound):
        await client.tokenize(inference_pb2.TokenizeRequest(model="nope", text="x"))
