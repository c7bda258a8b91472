"""Spec checks (every problem at once, each naming its field), defaults, target modules."""

from __future__ import annotations

from forgeline.client.refs import parse_ref
from forgeline.trainer import targets
from forgeline.trainer.config import TrainConfig, Tuner, check_spec, fill_defaults
from forgeline.v1 import trainer_pb2


def spec(**fields) -> trainer_pb2.TrainJobSpec:
    out = trainer_pb2.TrainJobSpec(
        task=trainer_pb2.TRAIN_TASK_SFT,
        base_model=parse_ref("smollm2-135m-instruct"),
        dataset=parse_ref("facts:1"),
    )
    for key, value in fields.items():
        setattr(out, key, value) if not hasattr(value, "DESCRIPTOR") else getattr(
            out, key
        ).CopyFrom(value)
    return out


def test_a_valid_spec_has_no_problem():
    assert check_spec(spec()).problems.items == []


def test_every_problem_is_reported_with_its_field():
    bad = spec(
        tuner=trainer_pb2.TUNER_QLORA,
        lora=trainer_pb2.LoraConfig(rank=100000, dropout=1.5),
        quantization=trainer_pb2.QuantizationConfig(bits=3),
        hyper_parameters=trainer_pb2.HyperParameters(
            learning_rate=-1, warmup_ratio=2, precision=trainer_pb2.PRECISION_FP16
        ),
        distribution=trainer_pb2.DistributionConfig(
            strategy=trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED,
            zero_stage=3,
            offload_params=True,
            deepspeed_config_json="{nope",
        ),
        dpo=trainer_pb2.DpoConfig(beta=0.5),
    )
    bad.base_model.name = "Bad Name"
    fields = [p.field for p in check_spec(bad).problems]
    assert fields == [
        "spec.base_model",
        "spec.lora.rank",
        "spec.lora.dropout",
        "spec.quantization.bits",
        "spec.hyper_parameters.learning_rate",
        "spec.hyper_parameters.warmup_ratio",
        "spec.hyper_parameters.precision",
        "spec.dpo",
        "spec.distribution.deepspeed_config_json",
        "spec.distribution.strategy",
        "spec.distribution.offload_params",
    ]


def test_incompatible_combinations_say_what_to_change():
    report = check_spec(
        spec(
            tuner=trainer_pb2.TUNER_QLORA,
            distribution=trainer_pb2.DistributionConfig(
                strategy=trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED, zero_stage=3
            ),
        )
    )
    (problem,) = report.problems
    assert problem.field == "spec.distribution.strategy"
    assert "zero_stage <= 2" in problem.description
    nccl = check_spec(
        spec(
            distribution=trainer_pb2.DistributionConfig(
                zero_stage=2, strategy=trainer_pb2.DISTRIBUTION_STRATEGY_DDP
            )
        )
    )
    assert [p.field for p in nccl.problems] == ["spec.distribution.zero_stage"]


def test_defaults_are_filled_and_the_seed_flags_map_to_qlora():
    filled = fill_defaults(
        spec(tuner=trainer_pb2.TUNER_QLORA, quantization=trainer_pb2.QuantizationConfig(bits=4))
    )
    cfg = TrainConfig.from_pb(filled)
    assert cfg.tuner is Tuner.QLORA and cfg.quant.quant_type.value == "nf4"
    assert (cfg.lora.rank, cfg.lora.alpha) == (8, 16)
    assert cfg.hyper.learning_rate == 2e-4 and cfg.hyper.seed == 42
    assert cfg.hyper.optimizer.value == "paged_adamw_32bit"
    assert filled.output_name == "smollm2-135m-instruct-sft"
    assert cfg.checkpoints.resume_enabled


def test_default_targets_per_architecture():
    assert targets.default_targets("llama")[:4] == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert targets.default_targets("chatglm")[0] == "query_key_value"
    assert targets.default_targets("gpt2") == ("c_attn", "c_proj", "c_fc")
    assert targets.default_targets("brand-new") == ("all-linear",)
    assert targets.resolve_targets("llama", ["q_proj"]) == ("q_proj",)
    names = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"}
    assert targets.missing_targets(["q_proj", "c_attn", "all-linear"], names) == ["c_attn"]
