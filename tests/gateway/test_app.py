"""The gateway over HTTP with the official OpenAI SDK, backed by a real inference server with
fake engines: shapes, streaming, keys, limits, errors, request ids and metrics.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from forgeline.client import InferenceClient
from forgeline.gateway.app import create_app
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from forgeline.inference.resolver import LocalModel, LocalResolver
from forgeline.inference.service import create_server
from forgeline.v1 import inference_pb2, registry_pb2
from tests.conftest import serving
from tests.gateway.conftest import aborted_requests, serve_app
from tests.helpers import wait_for
from tests.inference.fakes import ADAPTER_WORDS, BASE_WORDS, FakeEngineFactory

pytestmark = pytest.mark.integration

KEYS = KeyStore(
    [
        ApiKey("main", digest("main-key")),
        ApiKey("slow", digest("slow-key"), requests_per_minute=2),
        ApiKey("narrow", digest("narrow-key"), models=frozenset({"lora"})),
    ]
)


@pytest.fixture(scope="module")
def factory() -> FakeEngineFactory:
    return FakeEngineFactory(fail_for={"broken"})


@pytest.fixture(scope="module")
def inference(tmp_path_factory, factory):
    from forgeline.common.settings import Settings

    root = tmp_path_factory.mktemp("models")
    (root / "base").mkdir()
    (root / "lora").mkdir()
    (root / "lora" / "adapter_config.json").write_text(json.dumps({"r": 8}))
    resolver = LocalResolver(
        {
            "base": root / "base",
            "broken": root / "base",
            "lora": LocalModel(root / "lora", registry_pb2.VERSION_KIND_ADAPTER, ["base"]),
        }
    )
    settings = Settings.load("inference", port=0, home=str(root / "home"))
    with serving(
        lambda: create_server(settings, resolver=resolver, engine_factory=factory)[0]
    ) as thread:
        with InferenceClient(thread.address) as client:
            client.load_model("base", engine=inference_pb2.EngineOptions(enable_lora=True))
            client.load_adapter("lora")
            client.load_model("broken")
        yield thread


@pytest.fixture(scope="module")
def base_url(inference):
    config = GatewayConfig(inference.address, keys=KEYS, max_body_bytes=4096)
    with serve_app(create_app(config)) as url:
        yield url


def client(base_url: str, key: str = "main-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


def test_completions_non_streaming_and_streaming(base_url):
    api = client(base_url)
    done = api.completions.create(model="base", prompt="a b c", max_tokens=3, temperature=0)
    assert done.object == "text_completion" and done.model == "base"
    assert done.choices[0].text == " ".join(BASE_WORDS[:3])
    assert done.choices[0].finish_reason == "length"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (3, 3)
    events = list(
        api.completions.create(
            model="base",
            prompt="a b c",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(e.choices[0].text for e in events if e.choices) == done.choices[0].text
    assert events[-1].choices == [] and events[-1].usage.total_tokens == 6
    assert {e.id for e in events} == {events[0].id}


def test_chat_non_streaming_and_streaming_with_stop_and_n(base_url):
    api = client(base_url)
    done = api.chat.completions.create(
        model="lora", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert done.object == "chat.completion"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == " ".join(ADAPTER_WORDS[:4])
    stream = api.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": "hi"}],
        max_completion_tokens=10,
        stop=["fox"],
        n=2,
        temperature=0.5,
        stream=True,
    )
    events = list(stream)
    for index in (0, 1):
        mine = [e.choices[0] for e in events if e.choices[0].index == index]
        assert mine[0].delta.role == "assistant"
        assert "".join(c.delta.content or "" for c in mine) == "the quick brown "
        assert mine[-1].finish_reason == "stop"


def test_system_fingerprint_names_the_version_that_answered(base_url):
    api = client(base_url)
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    usage = {"include_usage": True}
    assert api.chat.completions.create(model="base", **chat).system_fingerprint == "base:1"
    assert api.chat.completions.create(model="lora", **chat).system_fingerprint == "lora:1"
    events = list(
        api.chat.completions.create(model="base", stream=True, stream_options=usage, **chat)
    )
    assert {e.system_fingerprint for e in events} == {"base:1"} and events[-1].usage
    text = {"prompt": ["a", "b"], "max_tokens": 2}
    assert api.completions.create(model="base", **text).system_fingerprint == "base:1"
    events = list(api.completions.create(model="base", stream=True, stream_options=usage, **text))
    assert {e.system_fingerprint for e in events} == {"base:1"} and events[-1].usage


def test_models_lists_what_the_key_may_use(base_url):
    ids = {m.id: m for m in client(base_url).models.list()}
    assert set(ids) == {"base", "lora"}  # the FAILED model is not listed
    assert client(base_url, "narrow-key").models.list().data[0].id == "lora"
    assert client(base_url).models.retrieve("lora").id == "lora"


def test_keys_are_required_and_checked(base_url):
    with pytest.raises(openai.AuthenticationError) as err:
        client(base_url, "wrong").models.list()
    assert err.value.body["code"] == "invalid_api_key"
    response = httpx.get(f"{base_url}/v1/models")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_or_forbidden_models_are_404(base_url):
    with pytest.raises(openai.NotFoundError) as err:
        client(base_url).completions.create(model="nope", prompt="x")
    assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client(base_url, "narrow-key").completions.create(model="base", prompt="x")


def test_rate_limit_answers_429_with_retry_after(base_url):
    api = client(base_url, "slow-key")
    for _ in range(2):
        api.completions.create(model="base", prompt="x", max_tokens=1)
    with pytest.raises(openai.RateLimitError) as err:
        api.completions.create(model="base", prompt="x", max_tokens=1)
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.body["code"] == "rate_limit_exceeded"


def test_oversized_body_is_413(base_url):
    with pytest.raises(openai.APIStatusError) as err:
        client(base_url).completions.create(model="base", prompt="x" * 5000)
    assert err.value.status_code == 413
    chunked = httpx.post(
        f"{base_url}/v1/completions",
        headers={"Authorization": "Bearer main-key"},
        content=iter([b'{"model": "base", "prompt": "', b"y" * 5000, b'"}']),
    )
    assert chunked.status_code == 413


def test_bad_parameters_are_400_naming_the_parameter(base_url):
    with pytest.raises(openai.BadRequestError) as err:
        client(base_url).completions.create(model="base", prompt="x", temperature=-1)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client(base_url).completions.create(model="base", prompt="x", max_tokens=10_000)
    assert err.value.body["param"] == "max_tokens"
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        headers={"Authorization": "Bearer main-key"},
        content=b"{not json",
    )
    assert response.status_code == 400


def test_a_model_that_is_not_ready_is_503(base_url):
    with pytest.raises(openai.InternalServerError) as err:
        client(base_url).completions.create(model="broken", prompt="x")
    assert err.value.status_code == 503


def test_request_ids_pass_through(base_url):
    headers = {"Authorization": "Bearer main-key", "X-Request-Id": "trace-123"}
    body = {"model": "base", "prompt": "x", "max_tokens": 1}
    response = httpx.post(f"{base_url}/v1/completions", headers=headers, json=body)
    assert response.headers["x-request-id"] == "trace-123"
    generated = httpx.get(f"{base_url}/health").headers["x-request-id"]
    assert len(generated) == 32


def first_event(lines) -> dict:
    line = next(lines)
    assert line.startswith("data: {")
    return json.loads(line.removeprefix("data: "))


def test_a_disconnected_stream_aborts_its_own_engine_request_only(base_url, factory):
    engine = factory.engines["base"]
    engine.step = 0.05
    url = f"{base_url}/v1/completions"
    auth = {"Authorization": "Bearer main-key"}
    try:
        with httpx.stream(
            "POST",
            url,
            headers={**auth, "X-Request-Id": "stays"},
            json={"model": "base", "prompt": "x", "max_tokens": 20, "stream": True},
        ) as staying:
            staying_lines = staying.iter_lines()
            staying_id = first_event(staying_lines)["id"]
            with httpx.stream(
                "POST",
                url,
                headers={**auth, "X-Request-Id": "leaves"},
                json={"model": "base", "prompt": "x", "max_tokens": 60, "stream": True},
            ) as leaving:
                assert leaving.headers["x-request-id"] == "leaves"
                # Kept referenced: dropping the line iterator would close the connection.
                leaving_lines = leaving.iter_lines()
                leaving_id = first_event(leaving_lines)["id"]
                assert staying_id in engine.running and leaving_id in engine.running
            # The client of `leaving` is gone: its engine request ends, the other runs on.
            wait_for(lambda: leaving_id in aborted_requests(engine), timeout=5)
            rest = [line for line in staying_lines if line]
        assert rest[-1] == "data: [DONE]"
        assert json.loads(rest[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == (
            "length"
        )
        assert staying_id not in aborted_requests(engine)
        wait_for(lambda: engine.unfinished_requests() == 0, timeout=5)
    finally:
        engine.step = 0.0


def test_a_client_that_leaves_before_a_json_answer_aborts_its_engine_request(base_url, factory):
    engine = factory.engines["base"]
    engine.step = 0.05
    before = aborted_requests(engine)
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{base_url}/v1/completions",
                headers={"Authorization": "Bearer main-key"},
                json={"model": "base", "prompt": "x", "max_tokens": 60},
                timeout=0.5,
            )
        wait_for(lambda: aborted_requests(engine) - before, timeout=5)
        [left] = aborted_requests(engine) - before
        assert left.startswith("cmpl-")
        wait_for(lambda: engine.unfinished_requests() == 0, timeout=5)
    finally:
        engine.step = 0.0


def test_health_and_metrics_are_open(base_url):
    # "broken" FAILED to load: the gateway is unhealthy and says which model is at fault
    # (tests/gateway/test_health.py covers a healthy one).
    health = httpx.get(f"{base_url}/health")
    assert health.status_code == 503
    assert health.json()["not_ready"] == [{"model": "broken", "state": "FAILED"}]
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'forgeline_gateway_requests_total{endpoint="completions",model="base",status="200"}' in (
        metrics
    )
    assert "forgeline_gateway_time_to_first_token_seconds_bucket" in metrics
    assert "forgeline_gateway_completion_tokens_total" in metrics


def test_health_is_503_without_the_inference_service():
    config = GatewayConfig("127.0.0.1:1", keys=KEYS)
    with serve_app(create_app(config)) as url:
        assert httpx.get(f"{url}/health").status_code == 503
        with pytest.raises(openai.InternalServerError) as err:
            client(url).completions.create(model="base", prompt="x")
        assert err.value.status_code == 503


def test_sse_wire_format(base_url):
    body = {"model": "base", "prompt": "x", "max_tokens": 2, "stream": True}
    response = httpx.post(
        f"{base_url}/v1/completions", headers={"Authorization": "Bearer main-key"}, json=body
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-1])


def test_batched_prompts_are_numbered_like_openai(base_url):
    done = client(base_url).completions.create(
        model="base", prompt=["a b", "c"], n=2, max_tokens=2, temperature=1.0
    )
    assert [c.index for c in done.choices] == [0, 1, 2, 3]
    assert {c.text for c in done.choices} == {" ".join(BASE_WORDS[:2])}
    assert done.usage.prompt_tokens == 3  # each prompt counted once, whatever n
    assert done.usage.completion_tokens == 8
    streamed = list(
        client(base_url).completions.create(
            model="base", prompt=["a b", "c"], max_tokens=2, stream=True
        )
    )
    assert {e.choices[0].index for e in streamed} == {0, 1}
