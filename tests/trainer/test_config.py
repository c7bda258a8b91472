"""Spec checks (every problem at once, each naming its field), defaults, target modules."""

from __future__ import annotations

import json

import pytest

from forgeline.client import exceptions
from forgeline.client.refs import parse_ref
from forgeline.trainer import targets
from forgeline.trainer.config import TrainConfig, Tuner, check_spec, fill_defaults
from forgeline.trainer.config.deepspeed_json import resolve_paths
from forgeline.v1 import common_pb2, trainer_pb2


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


def test_qlora_with_fsdp_runs_on_gpu_workers_and_is_refused_on_cpu_with_the_reason():
    def qlora_fsdp(gpus: int, bits: int = 4):
        return spec(
            tuner=trainer_pb2.TUNER_QLORA,
            quantization=trainer_pb2.QuantizationConfig(bits=bits),
            distribution=trainer_pb2.DistributionConfig(
                strategy=trainer_pb2.DISTRIBUTION_STRATEGY_FSDP,
                resources=common_pb2.ResourceRequest(num_workers=2, gpus_per_worker=gpus),
            ),
        )

    assert not check_spec(qlora_fsdp(gpus=1), gpus_available=True).problems
    (on_cpu,) = check_spec(qlora_fsdp(gpus=0)).problems
    assert on_cpu.field == "spec.distribution.strategy"
    assert "needs GPU workers" in on_cpu.description and "DDP" in on_cpu.description
    (eight_bit,) = check_spec(qlora_fsdp(gpus=1, bits=8), gpus_available=True).problems
    assert eight_bit.field == "spec.quantization.bits"


def test_packing_is_on_by_default_for_sft_and_pretraining_and_kept_when_given():
    pb = trainer_pb2
    sft, pretrain, dpo = (
        spec(task=t) for t in (pb.TRAIN_TASK_SFT, pb.TRAIN_TASK_PRETRAIN, pb.TRAIN_TASK_DPO)
    )
    assert fill_defaults(sft).hyper_parameters.packing
    assert fill_defaults(pretrain).hyper_parameters.packing
    assert not fill_defaults(dpo).hyper_parameters.packing
    off = spec(hyper_parameters=pb.HyperParameters(packing=False))
    assert not TrainConfig.from_pb(fill_defaults(off)).hyper.packing


ON_GPU = trainer_pb2.DistributionConfig(resources=common_pb2.ResourceRequest(gpus_per_worker=1))
DEEPSPEED = trainer_pb2.DistributionConfig(strategy=trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED)
FP32, BF16 = trainer_pb2.PRECISION_FP32, trainer_pb2.PRECISION_BF16


@pytest.mark.parametrize(
    ("fields", "cpu_bf16", "expected"),
    [
        ({}, False, FP32),
        ({}, True, BF16),
        ({"distribution": ON_GPU}, False, BF16),
        ({"tuner": trainer_pb2.TUNER_QLORA}, True, FP32),
        ({"distribution": DEEPSPEED}, True, FP32),
        ({"hyper_parameters": trainer_pb2.HyperParameters(precision=FP32)}, True, FP32),
    ],
    ids=["cpu", "cpu-with-bf16-units", "gpu", "qlora-on-cpu", "deepspeed-on-cpu", "asked-fp32"],
)
def test_precision_defaults_to_bf16_where_the_hardware_computes_it(fields, cpu_bf16, expected):
    filled = fill_defaults(spec(**fields), cpu_bf16=cpu_bf16)
    assert filled.hyper_parameters.precision == expected


def test_default_targets_per_architecture():
    assert targets.default_targets("llama")[:4] == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert targets.default_targets("chatglm")[0] == "query_key_value"
    assert targets.default_targets("gpt2") == ("c_attn", "c_proj", "c_fc")
    assert targets.default_targets("brand-new") == ("all-linear",)
    assert targets.resolve_targets("llama", ["q_proj"]) == ("q_proj",)
    names = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"}
    assert targets.missing_targets(["q_proj", "c_attn", "all-linear"], names) == ["c_attn"]


def deepspeed_problems(config: dict) -> list[tuple[str, str]]:
    report = check_spec(
        spec(
            distribution=trainer_pb2.DistributionConfig(
                strategy=trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED,
                deepspeed_config_json=json.dumps(config),
            )
        )
    )
    return [(p.field, p.description) for p in report.problems]


DS = "spec.distribution.deepspeed_config_json"


def test_deepspeed_json_accepts_known_settings_and_relative_paths():
    config = {
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "reduce_bucket_size": 5e8,
            "offload_param": {"device": "nvme", "nvme_path": "swap/params"},
        },
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-4, "betas": [0.9, 0.95]}},
        "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 10}},
        "bf16": {"enabled": True},
        "flops_profiler": {"enabled": True, "output_file": "flops.txt"},
        "tensorboard": {"enabled": True, "output_path": "tb/", "job_name": "run-1"},
        "csv_monitor": {"enabled": True, "output_path": "./csv"},
        "gradient_clipping": 0.5,
    }
    assert deepspeed_problems(config) == []


def test_deepspeed_json_refuses_unknown_keys_naming_their_path():
    problems = deepspeed_problems(
        {
            "wandb": {"enabled": True, "project": "leak"},
            "comet": {"enabled": True},
            "checkpoint": {"load_universal": True},
            "compile": {"backend": "evil.module.fn"},
            "zero_optimization": {"offload_optimizer": {"device": "cpu", "nvme_pth": "x"}},
            "optimizer": {"type": "torch.optim.SGD"},
            "made_up": 1,
        }
    )
    fields = [f for f, _ in problems]
    assert fields == [
        f"{DS}.wandb",
        f"{DS}.comet",
        f"{DS}.checkpoint",
        f"{DS}.compile",
        f"{DS}.zero_optimization.offload_optimizer.nvme_pth",
        f"{DS}.optimizer.type",
        f"{DS}.made_up",
    ]
    assert "off the cluster" in problems[0][1]
    assert "spec.checkpointing" in problems[2][1]
    assert "nvme_path" in problems[4][1]  # the accepted keys are listed
    assert "AdamW" in problems[5][1]


def test_deepspeed_json_paths_must_stay_inside_the_job():
    problems = deepspeed_problems(
        {
            "flops_profiler": {"output_file": "/etc/cron.d/flops"},
            "tensorboard": {"output_path": "../../other-job", "job_name": "../x"},
            "csv_monitor": {"output_path": "logs/../../x"},
            "zero_optimization": {"offload_param": {"nvme_path": "~/swap"}},
            "aio": "fast",
        }
    )
    assert [f for f, _ in problems] == [
        f"{DS}.flops_profiler.output_file",
        f"{DS}.tensorboard.output_path",
        f"{DS}.tensorboard.job_name",
        f"{DS}.csv_monitor.output_path",
        f"{DS}.zero_optimization.offload_param.nvme_path",
        f"{DS}.aio",
    ]
    assert "absolute paths are refused" in problems[0][1]
    assert "`..` is refused" in problems[1][1]


def test_deepspeed_json_paths_are_resolved_under_the_jobs_folder(tmp_path):
    config = {
        "flops_profiler": {"enabled": True, "output_file": "prof/./flops.txt"},
        "zero_optimization": {"stage": 3, "offload_param": {"nvme_path": "swap"}},
    }
    resolved = resolve_paths(config, tmp_path / "job-1")
    root = (tmp_path / "job-1").resolve() / "deepspeed"
    assert resolved["flops_profiler"]["output_file"] == str(root / "prof" / "flops.txt")
    assert resolved["zero_optimization"]["offload_param"]["nvme_path"] == str(root / "swap")
    assert config["flops_profiler"]["output_file"] == "prof/./flops.txt"  # not modified
    with pytest.raises(exceptions.InvalidArgument) as info:
        resolve_paths({"tensorboard": {"output_path": "/tmp"}}, tmp_path)
    assert info.value.violations[0].field == f"{DS}.tensorboard.output_path"
