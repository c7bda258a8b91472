"""Domain types of the inference service: validation, defaults, budgets, conversions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.inference.types import (
    ChatMessage,
    CompletionDelta,
    Dtype,
    EngineOptions,
    FinishReason,
    GenerateEvent,
    GenerateRequest,
    SamplingOptions,
    ServedKind,
    ServedModel,
    ServedState,
    TokenizeRequest,
    Usage,
    convert_logprobs,
    resolve_max_tokens,
)
from forgeline.v1 import inference_pb2


def fields(exc: InvalidArgument) -> set[str]:
    return {v.field for v in exc.violations}


def test_sampling_round_trips_through_protobuf_and_keeps_unset_fields_unset():
    options = SamplingOptions(
        temperature=0.0,
        max_tokens=7,
        stop=("\n",),
        seed=3,
        n=1,
        logprobs=2,
        logit_bias={5: -100.0},
    )
    pb = options.to_pb()
    assert not pb.HasField("top_p") and pb.HasField("temperature")
    assert SamplingOptions.from_pb(pb) == options
    assert SamplingOptions.from_pb(inference_pb2.SamplingParams()).n == 1


def test_sampling_engine_kwargs_take_generation_config_defaults_for_unset_fields():
    defaults = {"temperature": 0.6, "top_p": 0.9, "max_tokens": 100}
    kwargs = SamplingOptions(top_p=0.5, stop=("x",)).engine_kwargs(defaults, max_tokens=12)
    assert kwargs["temperature"] == 0.6  # the model's default
    assert kwargs["top_p"] == 0.5  # the request wins
    assert kwargs["max_tokens"] == 12
    assert kwargs["stop"] == ["x"] and kwargs["stop_token_ids"] is None
    assert "top_k" not in kwargs  # neither set nor defaulted: vLLM's own default


def test_sampling_violations_name_every_bad_field():
    bad = SamplingOptions(
        temperature=-1,
        top_p=0,
        min_p=2,
        presence_penalty=3,
        repetition_penalty=0,
        max_tokens=0,
        n=0,
        logprobs=50,
        stop=("",),
        logit_bias={1: 500.0},
    )
    names = {v.field for v in bad.violations()}
    assert names == {
        "sampling.temperature",
        "sampling.top_p",
        "sampling.min_p",
        "sampling.presence_penalty",
        "sampling.repetition_penalty",
        "sampling.max_tokens",
        "sampling.n",
        "sampling.logprobs",
        "sampling.stop",
        "sampling.logit_bias",
    }
    assert SamplingOptions(temperature=float("nan")).violations()[0].description == (
        "must be a finite number"
    )
    greedy_n = SamplingOptions(temperature=0.0, n=2).violations()
    assert [v.field for v in greedy_n] == ["sampling.n"]


def test_max_tokens_budget():
    assert resolve_max_tokens(None, 10, 100) == 90
    assert resolve_max_tokens(None, 10, 100, default=20) == 20
    assert resolve_max_tokens(None, 95, 100, default=20) == 5
    assert resolve_max_tokens(30, 10, 100) == 30
    with pytest.raises(InvalidArgument) as err:
        resolve_max_tokens(95, 10, 100)
    assert fields(err.value) == {"sampling.max_tokens"}
    assert "at most 90" in err.value.message
    with pytest.raises(InvalidArgument) as err:
        resolve_max_tokens(None, 100, 100, input_field="messages")
    assert fields(err.value) == {"messages"}


def test_generate_request_from_protobuf_and_validation():
    pb = inference_pb2.GenerateRequest(model="m", request_id="r1")
    pb.messages.messages.add(role="user", content="hi", name="bob")
    request = GenerateRequest.from_pb(pb)
    assert request.messages == (ChatMessage("user", "hi", "bob"),)
    assert request.add_generation_prompt is True and request.input_field == "messages"
    assert GenerateRequest.from_pb(request.to_pb()) == request
    pb.add_generation_prompt = False
    assert GenerateRequest.from_pb(pb).add_generation_prompt is False

    with pytest.raises(InvalidArgument) as err:
        GenerateRequest(model="", sampling=SamplingOptions(top_p=5)).validate()
    assert fields(err.value) == {"model", "input", "sampling.top_p"}
    with pytest.raises(InvalidArgument) as err:
        GenerateRequest(model="m", messages=(ChatMessage("", "x"),)).validate()
    assert fields(err.value) == {"messages.messages[0].role"}
    GenerateRequest(model="m", prompt="").validate()  # an empty prompt is a prompt


def test_tokenize_request_maps_to_the_same_rendering_as_generate():
    pb = inference_pb2.TokenizeRequest(model="m", text="hello")
    request = TokenizeRequest.from_pb(pb)
    assert request.as_generate() == GenerateRequest(model="m", prompt="hello")
    with pytest.raises(InvalidArgument):
        TokenizeRequest(model="m").validate()


def test_engine_options_validation_and_engine_kwargs():
    options = EngineOptions.from_pb(
        inference_pb2.EngineOptions(
            max_model_len=1024, dtype=inference_pb2.ENGINE_DTYPE_BFLOAT16, enable_lora=True
        )
    )
    assert options.dtype is Dtype.BFLOAT16
    kwargs = options.engine_kwargs()
    assert kwargs == {
        "dtype": "bfloat16",
        "enforce_eager": False,
        "max_model_len": 1024,
        "enable_lora": True,
        "max_loras": 1,
        "max_lora_rank": 16,
    }
    assert EngineOptions.from_pb(options.to_pb()) == options
    with pytest.raises(InvalidArgument) as err:
        EngineOptions(max_lora_rank=12, gpu_memory_utilization=2).validate()
    assert fields(err.value) == {
        "engine.max_lora_rank",
        "engine.gpu_memory_utilization",
        "engine.enable_lora",
    }
    assert EngineOptions().with_defaults(1 << 30).kv_cache_bytes == 1 << 30
    assert EngineOptions(gpu_memory_utilization=0.5).with_defaults(1 << 30).kv_cache_bytes == 0


@dataclass
class Lp:
    logprob: float
    rank: int | None
    decoded_token: str | None


def test_logprobs_keep_the_chosen_token_and_the_best_ranked_alternatives():
    positions = [
        None,  # the first prompt token has no logprob
        {7: Lp(-3.0, 4, "c"), 1: Lp(-0.1, 1, "a"), 2: Lp(-1.0, 2, "b")},
        {1: Lp(float("-inf"), 1, "a")},
    ]
    out = convert_logprobs(positions, [0, 7, 1], top_n=2)
    assert [(t.token_id, t.token) for t in out] == [(7, "c"), (1, "a")]
    assert [a.token_id for a in out[0].top] == [1, 2]
    assert out[1].logprob == -3.4e38  # -inf is clamped to something JSON can carry
    pb = out[0].to_pb()
    assert pb.top_logprobs[0].token == "a"


def test_events_and_served_models_convert_to_protobuf():
    event = GenerateEvent(
        "r",
        (CompletionDelta(0, "hi", (5,), finish_reason=FinishReason.STOP, stop_reason="\n"),),
        usage=Usage(3, 1),
    )
    pb = event.to_pb()
    assert pb.chunks[0].finish_reason == inference_pb2.FINISH_REASON_STOP
    assert pb.usage.total_tokens == 4
    assert not GenerateEvent("r").to_pb().HasField("usage")
    served = ServedModel(
        "ad", ServedKind.ADAPTER, "smol-lora@prod", 2, "smol", 2048, ServedState.READY
    ).to_pb()
    assert served.ref.alias == "prod" and served.parent == "smol"
    assert served.kind == inference_pb2.SERVED_MODEL_KIND_ADAPTER
