"""Sampling options: protobuf form, validation and the max_tokens budget."""

from __future__ import annotations

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.inference.sampling import SamplingParams, resolve_max_tokens
from forgeline.v1 import inference_pb2


def fields(exc: InvalidArgument) -> set[str]:
    return {v.field for v in exc.violations}


def test_sampling_round_trips_through_protobuf_and_keeps_unset_fields_unset():
    options = SamplingParams(
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
    assert SamplingParams.from_pb(pb) == options
    assert SamplingParams.from_pb(inference_pb2.SamplingParams()).n == 1


def test_sampling_violations_name_every_bad_field():
    bad = SamplingParams(
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
    assert SamplingParams(temperature=float("nan")).violations()[0].description == (
        "must be a finite number"
    )
    greedy_n = SamplingParams(temperature=0.0, n=2).violations()
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
