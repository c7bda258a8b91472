"""Engine options: protobuf form, validation and service defaults."""

from __future__ import annotations

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.inference.options import Dtype, EngineOptions
from forgeline.v1 import inference_pb2


def fields(exc: InvalidArgument) -> set[str]:
    return {v.field for v in exc.violations}


def test_engine_options_round_trip_validation_and_defaults():
    options = EngineOptions.from_pb(
        inference_pb2.EngineOptions(
            max_model_len=1024, dtype=inference_pb2.ENGINE_DTYPE_BFLOAT16, enable_lora=True
        )
    )
    assert options.dtype is Dtype.BFLOAT16
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
