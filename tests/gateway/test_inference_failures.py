"""How the gateway answers when the inference service fails: a token it refuses, a failure
after the first token (streamed and not), in OpenAI's error shape either way.
"""

from __future__ import annotations

import json
from contextlib import aclosing

import httpx
import pytest

from forgeline.client import ChannelOptions
from forgeline.gateway.app import create_app
from forgeline.gateway.config import GatewayConfig
from tests.gateway.conftest import fake_inference, serve_app
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

TOKEN = "internal-token"
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def factory() -> FakeEngineFactory:
    return FakeEngineFactory()


@pytest.fixture(scope="module")
def inference(tmp_path_factory, factory):
    with fake_inference(tmp_path_factory.mktemp("inference"), factory, TOKEN) as thread:
        yield thread


def gateway(inference, token: str):
    channel = ChannelOptions(token=token, retries=False)
    return serve_app(create_app(GatewayConfig(inference.address, channel=channel)))


@pytest.fixture(scope="module")
def base_url(inference):
    with gateway(inference, TOKEN) as url:
        yield url


@pytest.fixture
def breaking_engine(factory, monkeypatch):
    """The engine fails with an unexpected error after its first event."""
    engine = factory.engines["base"]
    original = engine.generate

    async def fails_after_one_event(request, request_id, adapter=None):
        async with aclosing(original(request, request_id, adapter)) as events:
            async for event in events:
                yield event
                raise RuntimeError("the engine broke")

    monkeypatch.setattr(engine, "generate", fails_after_one_event)
    return engine


def test_a_token_the_inference_service_refuses_is_a_500(inference):
    with gateway(inference, "wrong-token") as url:
        body = {"model": "base", "prompt": "x", "max_tokens": 1}
        response = httpx.post(f"{url}/v1/completions", json=body)
        assert response.status_code == 500
        assert response.json()["error"]["message"] == "the gateway is misconfigured"
        listed = httpx.get(f"{url}/v1/models")
        assert listed.status_code == 500 and set(listed.json()["error"]) == ERROR_FIELDS
        assert httpx.get(f"{url}/health").status_code == 503


def test_a_failure_mid_stream_ends_the_events_with_an_error(base_url, breaking_engine):
    body = {"model": "base", "prompt": "x", "max_tokens": 5, "stream": True}
    response = httpx.post(f"{base_url}/v1/completions", json=body)
    assert response.status_code == 200
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert set(error) == ERROR_FIELDS and error["type"] == "server_error"
    assert error["message"].startswith("the inference service failed:")
    assert json.loads(events[0])["choices"][0]["text"] == "the"


def test_a_failure_mid_generation_without_streaming_is_a_500(base_url, breaking_engine):
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body)
    assert response.status_code == 500
    error = response.json()["error"]
    assert set(error) == ERROR_FIELDS and error["type"] == "server_error"
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'forgeline_gateway_requests_total{endpoint="chat",model="base",status="500"}' in metrics
