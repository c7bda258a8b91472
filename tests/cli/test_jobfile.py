"""Job files: `--config`, `--print-config`, `jobs show --config`, and what bad files report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forgeline.client.refs import parse_ref
from forgeline.trainer.config import fill_defaults
from forgeline.v1 import common_pb2, trainer_pb2

BASE = "smollm2-135m-instruct"
FLAGS = [
    "--model", BASE, "--dataset", "law-qa:1", "--lora_rank", "64", "--learning_rate", "1e-4",
    "--lr-scheduler", "cosine-with-restarts", "--target-modules", "q_proj,v_proj", "--packing",
    "--label", "team=law", "--seed", "0", "--max-grad-norm", "0.5", "--bf16",
]  # fmt: skip


def plan(run_cli, trainer, *args: str, command: str = "sft") -> trainer_pb2.TrainJobSpec:
    run = run_cli(command, *args, "--plan")
    assert run.exit_code == 0, run.output
    return trainer.planned.pop()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_print_config_then_config_plans_the_same_spec(run_cli, trainer, tmp_path):
    from_flags = plan(run_cli, trainer, *FLAGS)
    printed = run_cli("sft", *FLAGS, "--print-config")
    assert printed.exit_code == 0, printed.output
    assert trainer.planned == [] and trainer.submitted == []
    data = yaml.safe_load(printed.output)
    assert data["task"] == "sft" and data["base_model"] == BASE and data["dataset"] == "law-qa:1"
    assert data["lora"] == {"rank": 64, "target_modules": ["q_proj", "v_proj"]}
    assert data["hyper_parameters"]["lr_scheduler"] == "cosine_with_restarts"
    assert "#   lora.alpha: 128" in printed.output  # the defaults the trainer fills, as comments
    job = write(tmp_path / "job.yaml", printed.output)
    assert plan(run_cli, trainer, "--config", str(job)) == from_flags


def test_jobs_show_config_runs_the_stored_spec_again(run_cli, trainer, tmp_path):
    stored = fill_defaults(
        trainer_pb2.TrainJobSpec(
            task=trainer_pb2.TRAIN_TASK_DPO,
            base_model=parse_ref(f"{BASE}:1"),
            dataset=parse_ref("prefs:3"),
            eval_dataset=parse_ref("prefs-eval@latest"),
            lora=trainer_pb2.LoraConfig(rank=16, modules_to_save=["lm_head"]),
            hyper_parameters=trainer_pb2.HyperParameters(max_steps=2**40, warmup_steps=5),
            dpo=trainer_pb2.DpoConfig(beta=0.2, reference_model=parse_ref("ref:2")),
            distribution=trainer_pb2.DistributionConfig(
                deepspeed_config_json='{\n  "gradient_clipping": 0.5\n}\n'
            ),
            labels={"team": "law"},
        )
    )
    trainer.jobs["job-1"] = common_pb2.Job(id="job-1", state=common_pb2.JOB_STATE_SUCCEEDED)
    trainer.specs["job-1"] = stored
    shown = run_cli("jobs", "show", "job-1", "--config")
    assert shown.exit_code == 0, shown.output
    assert "forgeline dpo --config" in shown.output
    job = write(tmp_path / "job-1.yaml", shown.output)
    assert plan(run_cli, trainer, "--config", str(job), command="dpo") == stored
    wrong = run_cli("sft", "--config", str(job), "--plan")
    assert wrong.exit_code == 2 and f"forgeline dpo --config {job}" in wrong.output


def test_flags_given_override_the_file_and_the_rest_is_kept(run_cli, trainer, tmp_path):
    job = write(
        tmp_path / "job.yaml",
        f"base_model: {BASE}\ndataset: law-qa:1\ntuner: DORA\n"
        "lora: {rank: 16, alpha: 32}\n"
        "hyper_parameters:\n  learning_rate: 2e-4\n  packing: true\n  epochs: 2\n"
        "labels: {team: law}\n",
    )
    spec = plan(run_cli, trainer, "--config", str(job), "--lr", "1e-4", "--no-packing",
                "--label", "env=test", "--model", "other:2")  # fmt: skip
    assert spec.tuner == trainer_pb2.TUNER_DORA
    assert (spec.lora.rank, spec.lora.alpha) == (16, 32)
    h = spec.hyper_parameters
    assert (h.learning_rate, h.packing, h.epochs) == (pytest.approx(1e-4), False, 2)
    assert dict(spec.labels) == {"team": "law", "env": "test"}
    assert (spec.base_model.name, spec.base_model.version) == ("other", 2)
    assert (spec.dataset.name, spec.dataset.version) == ("law-qa", 1)


def test_json_files_and_full_enum_names_are_read(run_cli, trainer, tmp_path):
    job = write(
        tmp_path / "job.json",
        json.dumps(
            {
                "task": "TRAIN_TASK_SFT",
                "base_model": BASE,
                "dataset": "law-qa@production",
                "tuner": "TUNER_QLORA",
                "quantization": {"bits": 4, "quant_type": "nf4"},
                "hyper_parameters": {"lr_scheduler": "Constant-With-Warmup", "max_steps": 12},
            },
            indent="\t",
        ),
    )
    spec = plan(run_cli, trainer, "--config", str(job))
    assert spec.tuner == trainer_pb2.TUNER_QLORA
    assert spec.quantization.quant_type == trainer_pb2.QUANT_TYPE_NF4
    h = spec.hyper_parameters
    assert h.lr_scheduler == trainer_pb2.LR_SCHEDULER_CONSTANT_WITH_WARMUP and h.max_steps == 12
    assert spec.dataset.alias == "production"


def test_a_local_dataset_in_a_job_file_is_uploaded_and_printed_absolute(
    run_cli, trainer, tmp_path, monkeypatch
):
    uploaded = []

    def upload(path, task, fmt, registry):
        uploaded.append((path, task, fmt))
        return "law-qa:4"

    monkeypatch.setattr("forgeline.cli.training_inputs.upload_dataset", upload)
    (tmp_path / "law_qa.jsonl").write_text("{}\n")
    job = write(tmp_path / "job.yaml", f"base_model: {BASE}\ndataset: law_qa.jsonl\n")
    spec = plan(run_cli, trainer, "--config", str(job), "--dataset-format", "messages")
    assert uploaded == [(Path("law_qa.jsonl"), "sft", "messages")]
    assert (spec.dataset.name, spec.dataset.version) == ("law-qa", 4)
    printed = run_cli("sft", "--config", str(job), "--print-config")
    assert yaml.safe_load(printed.output)["dataset"] == str(tmp_path / "law_qa.jsonl")
    assert len(uploaded) == 1  # printing uploads nothing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hyper_parameters:\n  learnin_rate: 1e-4\n",
         "job.yaml:2: hyper_parameters.learnin_rate: unknown key in hyper_parameters; "
         "did you mean hyper_parameters.learning_rate?"),
        ("lora:\n  rank: 8\nlearning_rate: 1e-4\n",
         "job.yaml:3: learning_rate: unknown key at the top level; "
         "did you mean hyper_parameters.learning_rate?"),
        ("num_train_epochs: 3\n",
         "job.yaml:1: num_train_epochs: unknown key at the top level; "
         "did you mean hyper_parameters.epochs?"),
        ("tunner: lora\n", "job.yaml:1: tunner: unknown key at the top level; did you mean tuner?"),
        ("lora_rank: 64\n",
         "job.yaml:1: lora_rank: unknown key at the top level; did you mean lora.rank?"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_named_with_the_key_meant(run_cli, trainer, tmp_path, text, expected):
    job = write(tmp_path / "job.yaml", text)
    run = run_cli("sft", "--model", BASE, "--dataset", "x:1", "--config", str(job), "--plan")
    assert run.exit_code == 2
    assert expected.replace("job.yaml", str(job)) in run.output, run.output
    assert trainer.planned == []


def test_values_of_the_wrong_type_are_all_reported_with_their_lines(run_cli, trainer, tmp_path):
    job = write(
        tmp_path / "job.yaml",
        "lora:\n  rank: eight\n  alpha: -3\n  target_modules: q_proj\n"
        "hyper_parameters:\n  packing: yes please\n  lr_scheduler: cosine_annealing\n"
        "labels:\n  version: 2\n",
    )
    run = run_cli("sft", "--model", BASE, "--dataset", "x:1", "--config", str(job), "--plan")
    assert run.exit_code == 2
    for line in [
        f"{job}:2: lora.rank: expected a whole number, got text 'eight'",
        f"{job}:3: lora.alpha: must be in 0..4294967295, got -3",
        f"{job}:4: lora.target_modules: expected a list, e.g. [q_proj, v_proj], got 'q_proj'",
        f"{job}:6: hyper_parameters.packing: expected true or false, got text 'yes please'",
        f"{job}:7: hyper_parameters.lr_scheduler: 'cosine_annealing' is not one of linear, cosine",
        f"{job}:9: labels.version: expected text, got 2 (quote it)",
    ]:
        assert line in run.output, run.output
    assert trainer.planned == []


def test_values_the_trainer_refuses_are_reported_where_they_were_set(run_cli, trainer, tmp_path):
    job = write(
        tmp_path / "job.yaml",
        "lora:\n  rank: 100000\nhyper_parameters:\n  learning_rate: -2e-4\n  warmup_ratio: 1.5\n",
    )
    run = run_cli("sft", "--model", BASE, "--dataset", "x:1", "--config", str(job), "--plan")
    assert run.exit_code == 2
    assert f"{job}:2: lora.rank: rank 100000 is too large; use 1..4096" in run.output
    assert f"{job}:4: hyper_parameters.learning_rate: learning rate must be in [0, 1)" in run.output
    assert f"{job}:5: hyper_parameters.warmup_ratio: warm-up ratio must be in [0, 1]" in run.output
    fixes = ["--lora-rank", "64", "--lr", "2e-4", "--warmup-ratio", "0.1", "--detach"]
    fixed = run_cli("sft", "--model", BASE, "--dataset", "x:1", "--config", str(job), *fixes)
    assert fixed.exit_code == 0, fixed.output  # flags given win over the file's values
    assert trainer.submitted[-1].lora.rank == 64
    flagged = run_cli("sft", "--model", BASE, "--dataset", "x:1", "--lr", "-1", "--plan")
    assert flagged.exit_code == 2 and "--lr: learning rate must be in [0, 1)" in flagged.output


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("job.yaml", "lora:\n  rank: 8\n bad: [\n", "job.yaml:3:2: "),
        ("job.yaml", "lora: {rank: 8\n", "job.yaml:2:1: "),
        ("job.json", '{\n  "lora": {"rank": 8,}\n}\n', "job.json:2:22: Expecting property name"),
        ("job.yaml", "lora:\n  rank: 8\n  rank: 16\n",
         "job.yaml:3: lora.rank: given twice (first on line 2)"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_reported_with_its_line(
    run_cli, trainer, tmp_path, name, text, expected
):
    job = write(tmp_path / name, text)
    run = run_cli("sft", "--model", BASE, "--dataset", "x:1", "--config", str(job), "--plan")
    assert run.exit_code == 2
    assert expected.replace(name, str(job)) in run.output, run.output
    assert trainer.planned == []


def test_the_model_and_dataset_come_from_the_flags_or_the_file(run_cli, trainer, tmp_path):
    job = write(tmp_path / "job.yaml", "lora: {rank: 8}\n")
    run = run_cli("sft", "--dataset", "x:1", "--config", str(job), "--plan")
    assert run.exit_code == 2 and "--model" in run.output and "base_model:" in run.output
    run = run_cli("sft", "--model", BASE, "--plan")
    assert run.exit_code == 2 and "--dataset" in run.output
    assert trainer.planned == []
