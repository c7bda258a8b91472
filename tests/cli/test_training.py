"""`forgeline sft|pt|dpo`: the flags become the `TrainJobSpec` the trainer receives."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from forgeline.client.labels import labels
from forgeline.trainer.config import QuantType, TrainConfig, Tuner, check_spec, fill_defaults
from forgeline.v1 import trainer_pb2

BASE = "smollm2-135m-instruct"


def sft(run_cli, *flags: str):
    return run_cli("sft", "--model", BASE, "--dataset", "facts:1", *flags, "--plan")


@pytest.mark.parametrize(
    ("dtype", "expected", "domain"),
    [
        ("nf4", trainer_pb2.QUANT_TYPE_NF4, QuantType.NF4),
        ("FP4", trainer_pb2.QUANT_TYPE_FP4, QuantType.FP4),
    ],
)
def test_the_seed_quantization_flags_build_a_qlora_spec(run_cli, trainer, dtype, expected, domain):
    run = sft(
        run_cli,
        "--tuner",
        "lora",
        "--quantization-bit",
        "4",
        "--lora-dtype",
        dtype,
        "--double-quant",
    )
    assert run.exit_code == 0, run.output
    (spec,) = trainer.planned
    assert spec.tuner == trainer_pb2.TUNER_QLORA  # a quantized base makes LoRA QLoRA
    assert spec.quantization == trainer_pb2.QuantizationConfig(
        bits=4, quant_type=expected, double_quant=True
    )
    assert list(check_spec(spec).problems) == []
    cfg = TrainConfig.from_pb(fill_defaults(spec))
    assert cfg.tuner is Tuner.QLORA
    assert (cfg.quant.bits, cfg.quant.quant_type, cfg.quant.double_quant) == (4, domain, True)


def test_without_quantization_flags_the_tuner_is_kept(run_cli, trainer):
    run = sft(run_cli, "--tuner", "dora")
    assert run.exit_code == 0, run.output
    (spec,) = trainer.planned
    assert spec.tuner == trainer_pb2.TUNER_DORA
    assert spec.quantization.bits == 0


def test_enum_flags_take_labels_in_any_spelling(run_cli, trainer):
    run = sft(
        run_cli,
        "--lr-scheduler", "cosine-with-restarts",
        "--optimizer", "PAGED_ADAMW_8BIT",
        "--precision", "bf16",
        "--strategy", "fsdp",
        "--dataset-format", "query-response",
        "--label", "team=law",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    (spec,) = trainer.planned
    h = spec.hyper_parameters
    assert h.lr_scheduler == trainer_pb2.LR_SCHEDULER_COSINE_WITH_RESTARTS
    assert h.optimizer == trainer_pb2.OPTIMIZER_PAGED_ADAMW_8BIT
    assert h.precision == trainer_pb2.PRECISION_BF16
    assert spec.distribution.strategy == trainer_pb2.DISTRIBUTION_STRATEGY_FSDP
    assert spec.dataset_format == trainer_pb2.DATASET_FORMAT_QUERY_RESPONSE
    assert dict(spec.labels) == {"team": "law"}


def test_dpo_flags_reach_the_dpo_section(run_cli, trainer):
    run = run_cli(
        "dpo", "--model", BASE, "--dataset", "pairs:2", "--beta", "0.3",
        "--loss-type", "ipo", "--reference-model", "ref:1", "--plan",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    (spec,) = trainer.planned
    assert spec.task == trainer_pb2.TRAIN_TASK_DPO
    assert spec.dpo.loss_type == trainer_pb2.DPO_LOSS_TYPE_IPO
    assert spec.dpo.beta == pytest.approx(0.3)
    assert (spec.dpo.reference_model.name, spec.dpo.reference_model.version) == ("ref", 1)


def test_an_unknown_choice_names_the_flag_and_the_choices(run_cli, trainer):
    run = sft(run_cli, "--strategy", "megatron")
    assert run.exit_code == 2
    assert "--strategy" in run.output
    assert "auto, none, ddp, fsdp, deepspeed" in run.output
    assert trainer.planned == []


def test_the_plan_shows_the_strategy_label(run_cli, trainer):
    run = sft(run_cli)
    assert run.exit_code == 0, run.output
    assert "NONE" in run.output and "memory per worker" in run.output


@pytest.mark.parametrize(
    ("option", "enum"),
    [
        ("dataset_format", trainer_pb2.DatasetFormat),
        ("tuner", trainer_pb2.Tuner),
        ("lora_dtype", trainer_pb2.QuantType),
        ("lr_scheduler", trainer_pb2.LrScheduler),
        ("precision", trainer_pb2.Precision),
        ("optimizer", trainer_pb2.Optimizer),
        ("strategy", trainer_pb2.DistributionStrategy),
        ("loss_type", trainer_pb2.DpoLossType),
    ],
)
def test_choice_options_show_and_complete_every_value_of_their_enum(option, enum):
    from forgeline.cli.main import app

    command = typer.main.get_command(app).commands["dpo"]
    (param,) = [p for p in command.params if p.name == option]
    spellings = [name.replace("_", "-") for name in labels(enum)]
    ctx = typer.Context(command)
    assert [item.value for item in param.shell_complete(ctx, "")] == spellings
    prefix = spellings[-1][:3]
    offered = [item.value for item in param.shell_complete(ctx, prefix)]
    assert offered == [s for s in spellings if s.startswith(prefix)]
    shown = CliRunner().invoke(app, ["dpo", "--help"], env={"COLUMNS": "400"}).output
    (row,) = [line for line in shown.splitlines() if f"--{option.replace('_', '-')} " in line]
    assert f"[{'|'.join(spellings)}]" in row
