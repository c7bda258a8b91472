"""One trace from an HTTP request through the inference service to its engine, and the
gateway's access line: the key's name, never the key."""

from __future__ import annotations

import json

import httpx
import pytest
from opentelemetry.trace import SpanKind

from forgeline.gateway.app import create_app
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from tests.gateway.conftest import TOKEN, fake_inference, gateway_config, serve_app
from tests.helpers import wait_for
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

KEY = "fl-the-secret-key-itself"
WRONG = "fl-a-key-nobody-issued"
GENERATE = "forgeline.v1.InferenceService/Generate"
CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture
def gateway(tmp_path):
    keys = KeyStore([ApiKey("alice", digest(KEY))])
    with (
        fake_inference(tmp_path, FakeEngineFactory(), TOKEN) as inference,
        serve_app(create_app(gateway_config(inference, keys=keys))) as url,
    ):
        yield url


def test_one_trace_from_the_gateway_through_inference_to_the_engine(gateway, spans):
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    reply = httpx.post(
        f"{gateway}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {KEY}", "traceparent": traceparent},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    wait_for(lambda: any(s.name == GENERATE and s.kind is SpanKind.CLIENT for s in spans.spans()))
    http = spans.named("POST /v1/chat/completions")
    sent = spans.named(GENERATE, SpanKind.CLIENT)
    served = spans.named(GENERATE, SpanKind.SERVER)
    engine = spans.named("engine generate")
    # The client's trace goes on: gateway -> its gRPC call -> the service -> the engine.
    assert format(http.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert http.parent.span_id == 0xB7AD6B7169203331
    assert sent.parent.span_id == http.context.span_id
    assert served.parent.span_id == sent.context.span_id
    assert engine.parent.span_id == served.context.span_id
    assert len({s.context.trace_id for s in (http, sent, served, engine)}) == 1
    assert http.attributes["http.route"] == "/v1/chat/completions"
    assert http.attributes["http.response.status_code"] == 200
    assert served.attributes["rpc.grpc.status_code"] == 0
    assert engine.attributes["forgeline.model"] == "base" and engine.attributes["forgeline.events"]


def test_the_access_line_names_the_key_never_the_key_itself(gateway, json_logs):
    reply = httpx.post(
        f"{gateway}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {KEY}", "x-request-id": "req-7"},
        timeout=30,
    )
    refused = httpx.get(f"{gateway}/v1/models", headers={"authorization": f"Bearer {WRONG}"})
    assert reply.status_code == 200 and refused.status_code == 401
    wait_for(lambda: len(json_logs.matching(logger="forgeline.gateway.access")) == 2)
    chat, models = json_logs.matching(logger="forgeline.gateway.access")
    assert chat["service"] == "gateway" and chat["request_id"] == "req-7"
    assert (chat["method"], chat["path"], chat["status"]) == ("POST", "/v1/chat/completions", 200)
    assert chat["model"] == "base" and chat["key"] == "alice" and chat["duration_ms"] > 0
    assert (models["status"], models["key"]) == (401, "")
    assert len(models["request_id"]) == 32
    assert not any(
        KEY in json.dumps(line) or "wrong" in json.dumps(line) for line in json_logs.lines
    )
    # The inference service logged its part of the request under the same id.
    served = json_logs.matching(service="inference", request_id="req-7")
    assert served, [line for line in json_logs.lines if line.get("service") == "inference"]
