"""What a quantize spec may say on its own: defaults written in, every problem by field."""

from __future__ import annotations

import pytest

from forgeline.client.refs import parse_ref
from forgeline.quantizer.spec import QuantizeConfig, check_spec, fill_defaults
from forgeline.v1 import common_pb2
from forgeline.v1 import quantizer_pb2 as q

GPTQ, AWQ, NF4, GGUF = (
    q.QUANTIZE_METHOD_GPTQ,
    q.QUANTIZE_METHOD_AWQ,
    q.QUANTIZE_METHOD_BNB_NF4,
    q.QUANTIZE_METHOD_GGUF,
)


def spec(**fields) -> q.QuantizeJobSpec:
    return q.QuantizeJobSpec(source=parse_ref("smol:1"), **fields)


def problems(s: q.QuantizeJobSpec) -> list[str]:
    return check_spec(fill_defaults(s)).fields()


def test_defaults_are_written_into_the_stored_spec():
    gptq = fill_defaults(spec(method=GPTQ))
    assert (gptq.operation, gptq.bits) == (q.QUANTIZE_OPERATION_QUANTIZE, 4)
    calibration = (
        gptq.num_calibration_samples,
        gptq.calibration_max_seq_length,
        gptq.tuning_steps,
    )
    assert calibration == (8, 256, 25)  # CPU defaults: minutes, not hours
    on_gpu = fill_defaults(
        spec(method=GPTQ, resources=common_pb2.ResourceRequest(gpus_per_worker=1))
    )
    assert (on_gpu.num_calibration_samples, on_gpu.tuning_steps) == (128, 200)
    assert gptq.output_name == "smol-gptq-w4"
    assert fill_defaults(spec(method=NF4)).output_name == "smol-nf4"
    assert fill_defaults(spec(method=NF4)).num_calibration_samples == 0  # not calibrated
    gguf = fill_defaults(spec(method=GGUF))
    assert (gguf.gguf_type, gguf.output_name) == (q.GGUF_TYPE_F16, "smol-gguf-f16")
    merge = fill_defaults(spec(operation=q.QUANTIZE_OPERATION_MERGE))
    assert (merge.output_name, merge.bits) == ("smol-merged", 0)
    assert fill_defaults(spec(method=AWQ, output_name="mine")).output_name == "mine"


def test_a_valid_spec_has_no_problem_and_reads_back():
    s = fill_defaults(spec(method=GPTQ, bits=8, group_size=64))
    assert problems(s) == []
    cfg = QuantizeConfig.from_pb(s)
    assert (cfg.method.value, cfg.bits, cfg.group_size, cfg.source) == ("gptq", 8, 64, "smol:1")


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({}, "spec.method", "choose a method"),
        ({"method": AWQ, "bits": 3}, "spec.bits", "does 4"),
        ({"method": GPTQ, "bits": 3}, "spec.bits", "4, 8"),
        ({"method": GPTQ, "symmetric": False}, "spec.symmetric", "symmetric GPTQ only"),
        ({"method": GPTQ, "group_size": 48}, "spec.group_size", "32, 64 or 128"),
        ({"method": NF4, "tuning_steps": 10}, "spec.tuning_steps", "only GPTQ and AWQ"),
        ({"method": NF4, "bits": 8}, "spec.bits", "does 4"),
        ({"method": GGUF, "bits": 4}, "spec.bits", "gguf_type"),
        ({"method": NF4, "group_size": 64}, "spec.group_size", "only GPTQ and AWQ"),
        ({"method": GPTQ, "group_size": -2}, "spec.group_size", "per channel"),
        ({"method": NF4, "gguf_type": q.GGUF_TYPE_Q8_0}, "spec.gguf_type", "GGUF"),
        ({"method": GPTQ, "output_name": "Bad Name"}, "spec.output_name", "invalid"),
        ({"method": GPTQ, "num_calibration_samples": 100_000}, "spec.num_calibration_samples", ""),
        ({"operation": q.QUANTIZE_OPERATION_MERGE, "method": GPTQ}, "spec.method", "no method"),
    ],
)
def test_each_problem_names_its_field(fields, field, words):
    s = fill_defaults(spec(**fields))
    v = check_spec(s)
    assert field in v.fields(), v
    assert words in next(x.description for x in v if x.field == field)


def test_calibration_data_only_for_calibrated_methods():
    s = spec(method=NF4, calibration_dataset=parse_ref("texts:1"))
    assert problems(s) == ["spec.calibration_dataset"]
    assert problems(spec(method=GPTQ, calibration_dataset=parse_ref("texts:1"))) == []
