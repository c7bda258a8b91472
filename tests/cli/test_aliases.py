"""Familiar flags of Hugging Face, ms-swift and LLaMA-Factory set the same spec fields as ours."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from forgeline.cli.training_flags import ALIASES, FLAG_ALIASES
from forgeline.v1 import trainer_pb2

BASE = "smollm2-135m-instruct"

# Our flag, a value, the spec field it sets and what the field holds, then the aliases.
VALUED = [
    ("--model", "law:2", "base_model.name", "law",
     ["--model-name-or-path", "--model_name_or_path"]),
    ("--output", "law-adapter", "output_name", "law-adapter", ["--output-name"]),
    ("--tuner", "dora", "tuner", trainer_pb2.TUNER_DORA,
     ["--train-type", "--train_type", "--finetuning-type", "--finetuning_type"]),
    ("--lora-rank", "64", "lora.rank", 64, ["--lora_rank"]),
    ("--lora-alpha", "32", "lora.alpha", 32, ["--lora_alpha"]),
    ("--lora-dropout", "0.05", "lora.dropout", 0.05, ["--lora_dropout"]),
    ("--target-modules", "q_proj,v_proj", "lora.target_modules", ["q_proj", "v_proj"],
     ["--target_modules", "--lora-target", "--lora_target"]),
    ("--quantization-bit", "4", "quantization.bits", 4, ["--quantization_bit"]),
    ("--epochs", "3", "hyper_parameters.epochs", 3, ["--num-train-epochs", "--num_train_epochs"]),
    ("--max-steps", "100", "hyper_parameters.max_steps", 100, ["--max_steps"]),
    ("--lr", "1e-4", "hyper_parameters.learning_rate", 1e-4,
     ["--learning-rate", "--learning_rate"]),
    ("--lr-scheduler", "cosine", "hyper_parameters.lr_scheduler", trainer_pb2.LR_SCHEDULER_COSINE,
     ["--lr-scheduler-type", "--lr_scheduler_type"]),
    ("--warmup-ratio", "0.1", "hyper_parameters.warmup_ratio", 0.1, ["--warmup_ratio"]),
    ("--warmup-steps", "10", "hyper_parameters.warmup_steps", 10, ["--warmup_steps"]),
    ("--weight-decay", "0.01", "hyper_parameters.weight_decay", 0.01, ["--weight_decay"]),
    ("--batch-size", "4", "hyper_parameters.per_device_batch_size", 4,
     ["--per-device-train-batch-size", "--per_device_train_batch_size"]),
    ("--grad-accum", "8", "hyper_parameters.gradient_accumulation_steps", 8,
     ["--gradient-accumulation-steps", "--gradient_accumulation_steps"]),
    ("--max-seq-len", "1024", "hyper_parameters.max_seq_length", 1024,
     ["--max-length", "--max_length", "--cutoff-len", "--cutoff_len"]),
]  # fmt: skip
# Flags without a value: ours (with anything it needs beside it), the field, its value, aliases.
FLAGS = [
    (["--gradient-checkpointing"], "hyper_parameters.gradient_checkpointing", True,
     ["--gradient_checkpointing"]),
    (["--precision", "bf16"], "hyper_parameters.precision", trainer_pb2.PRECISION_BF16, ["--bf16"]),
    (["--precision", "fp16", "--gpus-per-worker", "1"], "hyper_parameters.precision",
     trainer_pb2.PRECISION_FP16, ["--fp16", "--gpus-per-worker", "1"]),
]  # fmt: skip


def field(spec: trainer_pb2.TrainJobSpec, path: str):
    value = spec
    for part in path.split("."):
        value = getattr(value, part)
    return list(value) if path == "lora.target_modules" else value


def planned(run_cli, trainer, *flags: str) -> trainer_pb2.TrainJobSpec:
    spellings = ("--model", *ALIASES["model"])
    given = any(flag.split("=")[0] in spellings for flag in flags)
    model = [] if given else ["--model", BASE]
    run = run_cli("sft", *model, "--dataset", "facts:1", *flags, "--plan")
    assert run.exit_code == 0, run.output
    return trainer.planned.pop()


@pytest.mark.parametrize(
    ("ours", "value", "path", "expected", "aliases"), VALUED, ids=[c[0] for c in VALUED]
)
def test_each_alias_sets_the_field_our_flag_sets(
    run_cli, trainer, ours, value, path, expected, aliases
):
    spec = planned(run_cli, trainer, ours, value)
    assert field(spec, path) == pytest.approx(expected)
    for alias in aliases:
        assert planned(run_cli, trainer, alias, value) == spec, alias
        assert planned(run_cli, trainer, f"{alias}={value}") == spec, alias


@pytest.mark.parametrize(("ours", "path", "expected", "aliases"), FLAGS, ids=["gc", "bf16", "fp16"])
def test_each_flag_alias_sets_the_field_our_flag_sets(
    run_cli, trainer, ours, path, expected, aliases
):
    spec = planned(run_cli, trainer, *ours)
    assert field(spec, path) == expected
    assert planned(run_cli, trainer, *aliases) == spec


def test_every_alias_is_covered_here():
    covered = {a for case in VALUED for a in case[4]} | {a for case in FLAGS for a in case[3]}
    declared = {a for names in ALIASES.values() for a in names}
    declared |= {f for flags in FLAG_ALIASES.values() for f in flags if not f.startswith("--no-")}
    assert declared <= covered, declared - covered


@pytest.mark.parametrize(
    "negation",
    ["--no-double-quant", "--no-packing", "--no-gradient-checkpointing",
     "--no-offload-optimizer", "--no-offload-params", "--no-resume"],
)  # fmt: skip
def test_no_flags_turn_a_setting_off(run_cli, trainer, negation):
    spec = planned(run_cli, trainer, negation)
    path = {
        "--no-double-quant": "quantization.double_quant",
        "--no-packing": "hyper_parameters.packing",
        "--no-gradient-checkpointing": "hyper_parameters.gradient_checkpointing",
        "--no-offload-optimizer": "distribution.offload_optimizer",
        "--no-offload-params": "distribution.offload_params",
        "--no-resume": "checkpointing.resume_enabled",
    }[negation]
    *parents, name = path.split(".")
    message = spec
    for part in parents:
        message = getattr(message, part)
    assert getattr(message, name) is False
    if message.DESCRIPTOR.fields_by_name[name].has_presence:
        assert message.HasField(name)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lr", "1e-4", "--learning-rate", "2e-4"], ["--lr 1e-4", "--learning-rate 2e-4"]),
        (["--learning_rate=1e-4", "--lr", "2e-4"], ["--lr 2e-4", "--learning_rate 1e-4"]),
        (["--bf16", "--precision", "fp32"], ["--precision fp32", "--bf16"]),
        (["--packing", "--no-packing"], ["--packing", "--no-packing"]),
        (["--tuner", "dora", "--train_type", "full"], ["--tuner dora", "--train_type full"]),
    ],
)
def test_one_option_given_different_values_is_refused(run_cli, trainer, flags, named):
    run = run_cli("sft", "--model", BASE, "--dataset", "facts:1", *flags, "--plan")
    assert run.exit_code == 2, run.output
    assert all(spelling in run.output for spelling in named), run.output
    assert trainer.planned == []


def test_the_same_value_under_two_spellings_is_fine(run_cli, trainer):
    spec = planned(
        run_cli, trainer,
        "--lr", "1e-4", "--learning_rate", "0.0001",
        "--tuner", "LORA", "--train-type", "lora",
        "--bf16", "--precision", "BF16",
    )  # fmt: skip
    h = spec.hyper_parameters
    assert h.learning_rate == pytest.approx(1e-4) and h.precision == trainer_pb2.PRECISION_BF16


def test_one_spelling_repeated_keeps_its_last_value(run_cli, trainer):
    spec = planned(run_cli, trainer, "--lr", "1e-4", "--lr", "2e-4", "--learning-rate", "2e-4")
    assert spec.hyper_parameters.learning_rate == pytest.approx(2e-4)


def test_a_bad_value_under_an_alias_names_the_option(run_cli, trainer):
    run = run_cli("sft", "--model", BASE, "--dataset", "facts:1", "--learning_rate", "fast",
                  "--lr", "1e-4", "--plan")  # fmt: skip
    assert run.exit_code == 2 and "--lr" in run.output, run.output
    assert trainer.planned == []


def test_values_of_other_tools_map_or_are_refused_clearly(run_cli, trainer):
    spec = planned(run_cli, trainer, "--lora_target", "all", "--deepspeed", "zero3_offload")
    assert list(spec.lora.target_modules) == ["all-linear"]
    d = spec.distribution
    assert d.strategy == trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED
    assert (d.zero_stage, d.offload_optimizer, d.offload_params) == (3, True, True)
    frozen = run_cli("sft", "--model", BASE, "--dataset", "facts:1", "--finetuning_type", "freeze")
    assert frozen.exit_code == 2
    assert "lora, qlora, dora, full" in frozen.output and "some layers" in frozen.output
    unknown = run_cli("sft", "--model", BASE, "--dataset", "facts:1", "--deepspeed", "zero9")
    assert unknown.exit_code == 2 and "zero2_offload" in unknown.output


def test_help_lists_each_options_aliases_on_its_line():
    from forgeline.cli.main import app

    shown = CliRunner().invoke(app, ["sft", "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    rows = {}
    for line in shown.output.splitlines():
        words = line.strip("│ ").split()
        if words and words[0].startswith("--"):
            rows[words[0]] = line
    ours = {p.name: p.opts[0] for p in typer.main.get_command(app).commands["sft"].params}
    for name, spellings in [*ALIASES.items(), *FLAG_ALIASES.items()]:
        assert all(s in rows[ours[name]] for s in spellings), rows[ours[name]]
