"""Conversions to and from vLLM's types that need no engine: arguments, outputs, logprobs."""

from __future__ import annotations

from dataclasses import dataclass

from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import FinishReason
from forgeline.inference.sampling import SamplingParams
from forgeline.inference.vllm_convert import (
    completion_delta,
    convert_logprobs,
    engine_kwargs,
    finish_reason,
    sampling_kwargs,
)
from forgeline.v1 import inference_pb2


def test_sampling_kwargs_take_generation_config_defaults_for_unset_fields():
    defaults = {"temperature": 0.6, "top_p": 0.9, "max_tokens": 100}
    kwargs = sampling_kwargs(SamplingParams(top_p=0.5, stop=("x",)), defaults, max_tokens=12)
    assert kwargs["temperature"] == 0.6  # the model's default
    assert kwargs["top_p"] == 0.5  # the request wins
    assert kwargs["max_tokens"] == 12
    assert kwargs["stop"] == ["x"] and kwargs["stop_token_ids"] is None
    assert "top_k" not in kwargs  # neither set nor defaulted: vLLM's own default


def test_engine_kwargs_leave_unset_options_at_vllm_defaults():
    options = EngineOptions.from_pb(
        inference_pb2.EngineOptions(
            max_model_len=1024, dtype=inference_pb2.ENGINE_DTYPE_BFLOAT16, enable_lora=True
        )
    )
    assert engine_kwargs(options) == {
        "dtype": "bfloat16",
        "enforce_eager": False,
        "max_model_len": 1024,
        "enable_lora": True,
        "max_loras": 1,
        "max_lora_rank": 16,
    }


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


@dataclass
class Completion:
    """The fields of vLLM's `CompletionOutput` the conversion reads."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


def test_finish_reasons_map_to_the_contract_and_unknown_ones_count_as_stop():
    assert finish_reason(None) is None
    assert finish_reason("length") is FinishReason.LENGTH
    assert finish_reason("abort") is FinishReason.ABORT
    assert finish_reason("repetition") is FinishReason.STOP


def test_completion_deltas_carry_new_output_and_skip_empty_steps():
    assert completion_delta(Completion(0, "", []), logprobs=None) is None
    delta = completion_delta(
        Completion(1, " fox", [7], [{7: Lp(-0.5, 1, " fox")}], "stop", 2), logprobs=1
    )
    assert delta is not None
    assert (delta.index, delta.text, delta.token_ids) == (1, " fox", (7,))
    assert delta.finish_reason is FinishReason.STOP and delta.stop_reason == "2"
    assert [lp.token for lp in delta.logprobs] == [" fox"]
    unasked = completion_delta(Completion(0, "x", [3], [{3: Lp(-1.0, 1, "x")}]), logprobs=None)
    assert unasked is not None and unasked.logprobs == () and unasked.stop_reason == ""
