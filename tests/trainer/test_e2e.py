"""The trainer end to end: registry and trainer servers, Ray workers, the bundled SmolLM2.

Every job is tiny (a handful of examples, a few steps, short sequences) so the whole file
runs in a few minutes on two CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from forgeline.client import exceptions
from forgeline.client.jobs import TrainerClient
from forgeline.client.refs import format_ref, parse_ref
from forgeline.common.settings import ServiceName, Settings
from forgeline.v1 import common_pb2, inference_pb2, registry_pb2, trainer_pb2
from tests.conftest import ServerThread
from tests.inference.support import ENGINE
from tests.trainer.datasets import FACTS, facts_rows, preference_rows, write_jsonl
from tests.trainer.suite import BASE, QV, answers, small_spec

pytestmark = pytest.mark.e2e


def test_sft_lora_learns_facts_the_base_does_not_know(suite, tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forgeline.cli.main import app

    dataset = write_jsonl(tmp_path / "zorblax_facts.jsonl", facts_rows())
    monkeypatch.setenv("FORGELINE_REGISTRY_ADDRESS", suite.registry.address)
    monkeypatch.setenv("FORGELINE_TRAINER_ADDRESS", suite.trainer.address)
    args = [
        "sft", "--model", BASE, "--dataset", str(dataset), "--output", "facts-adapter",
        "--lora-rank", "16", "--max-steps", "12", "--lr", "1e-3", "--lr-scheduler", "constant",
        "--batch-size", "4", "--max-seq-len", "128",
    ]  # fmt: skip
    plan_run = CliRunner().invoke(app, [*args, "--plan"])
    assert plan_run.exit_code == 0, plan_run.output
    assert "NONE" in plan_run.output and "memory per worker" in plan_run.output
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "registered facts-adapter:1" in run.output

    with suite.registry_client() as registry:
        version = registry.get_version("facts-adapter:1")
        dataset_version = registry.get_version("zorblax_facts")
    assert version.kind == registry_pb2.VERSION_KIND_ADAPTER
    assert [(p.name, p.version) for p in version.parents] == [(BASE, 1), ("zorblax_facts", 1)]
    assert version.lineage.job_id.startswith("job-")
    assert version.lineage.dataset_digest == dataset_version.manifest_digest
    assert json.loads(version.lineage.spec_json)["lora"]["rank"] == 16
    assert version.metrics["loss"] < 0.2 and version.metrics["train_steps"] == 12
    folder = suite.pull("facts-adapter:1")
    curve = (folder / "training" / "loss_curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,loss") and len(curve) == 13
    assert (folder / "training" / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "finished 12 steps" in (folder / "training" / "train.log").read_text()

    base_dir = suite.pull(f"{BASE}:1")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    questions = [q for q, _, _ in FACTS]
    keys = [k for _, _, k in FACTS]
    before = answers(base, tokenizer, questions)
    tuned = PeftModel.from_pretrained(base, folder)
    after = answers(tuned, tokenizer, questions)
    assert not any(k.lower() in a.lower() for k, a in zip(keys, before, strict=True)), before
    assert all(k.lower() in a.lower() for k, a in zip(keys, after, strict=True)), after

    # The plan's memory estimate against the peak the worker measured.
    with suite.trainer_client() as trainer:
        _, spec = trainer.get(version.lineage.job_id)
        plan = trainer.plan(spec)
    measured = version.metrics["peak_rss_bytes"] - version.metrics["baseline_rss_bytes"]
    estimate = plan.memory_per_worker.total_bytes
    assert 0.5 < estimate / measured < 2.0, (estimate, measured)


def test_qlora_nf4_and_dora_train_and_register(suite, tmp_path):
    ref = suite.upload(write_jsonl(tmp_path / "facts.jsonl", facts_rows()), "facts-small")
    qlora = small_spec(trainer_pb2.TRAIN_TASK_SFT, ref, "facts-qlora")
    qlora.tuner = trainer_pb2.TUNER_QLORA
    qlora.quantization.bits = 4
    qlora.quantization.quant_type = trainer_pb2.QUANT_TYPE_NF4
    qlora.quantization.double_quant = True
    dora = small_spec(trainer_pb2.TRAIN_TASK_SFT, ref, "facts-dora")
    dora.tuner = trainer_pb2.TUNER_DORA
    with suite.trainer_client() as trainer:
        jobs = [trainer.submit(qlora), trainer.submit(dora)]
        finals = [trainer.wait(j.id) for j in jobs]
    for final in finals:
        assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    with suite.registry_client() as registry:
        q = registry.get_version("facts-qlora:1")
        d = registry.get_version("facts-dora:1")
    assert (q.metadata["tuner"], d.metadata["tuner"]) == ("qlora", "dora")
    config = json.loads((suite.pull("facts-dora:1") / "adapter_config.json").read_text())
    assert config["use_dora"] is True
    qconfig = json.loads((suite.pull("facts-qlora:1") / "adapter_config.json").read_text())
    assert qconfig["r"] == 4 and sorted(qconfig["target_modules"]) == QV


def test_dpo_moves_the_reward_margin(suite, tmp_path):
    ref = suite.upload(write_jsonl(tmp_path / "manners.jsonl", preference_rows()), "manners")
    spec = small_spec(
        trainer_pb2.TRAIN_TASK_DPO, ref, "manners-dpo", max_steps=5, learning_rate=5e-4
    )
    spec.hyper_parameters.per_device_batch_size = 3
    with suite.trainer_client() as trainer:
        job = trainer.submit(spec)
        margins = [
            e.metrics.values["rewards/margins"]
            for e in trainer.watch(job.id)
            if e.WhichOneof("payload") == "metrics" and "rewards/margins" in e.metrics.values
        ]
        final = trainer.get(job.id)[0]
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    assert margins[0] == pytest.approx(0.0, abs=1e-3)  # policy == reference at the start
    assert margins[-1] > 0.2 and final.metrics["rewards/accuracies"] == 1.0
    with suite.registry_client() as registry:
        assert registry.get_version("manners-dpo:1").metrics["rewards/margins"] > 0.2


@pytest.mark.parametrize(
    ("strategy", "stage", "offload"),
    [
        (trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED, 2, False),
        (trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED, 3, True),
        (trainer_pb2.DISTRIBUTION_STRATEGY_FSDP, None, False),
        (trainer_pb2.DISTRIBUTION_STRATEGY_DDP, None, False),
    ],
    ids=["zero2", "zero3-offload", "fsdp", "ddp"],
)
def test_two_workers_sharded(suite, tmp_path, strategy, stage, offload):
    ref = suite.upload(write_jsonl(tmp_path / "facts.jsonl", facts_rows()), "facts-small")
    strategy_name = trainer_pb2.DistributionStrategy.Name(strategy).rsplit("_", 1)[1].lower()
    name = f"facts-zero{stage}" if stage is not None else f"facts-{strategy_name}"
    spec = small_spec(trainer_pb2.TRAIN_TASK_SFT, ref, name, max_steps=3)
    d = spec.distribution
    d.strategy = strategy
    if stage is not None:
        d.zero_stage = stage
    d.offload_optimizer = offload
    d.resources.num_workers = 2
    with suite.trainer_client() as trainer:
        final = trainer.wait(trainer.submit(spec).id)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    with suite.registry_client() as registry:
        version = registry.get_version(name)
    expected = "deepspeed" if stage is not None else strategy_name
    assert version.metadata["strategy"] == expected and version.metadata["workers"] == "2"
    # Reported by the workers' process group, not echoed from the spec.
    assert version.metrics["world_size"] == 2
    adapter = suite.pull(f"{name}:{version.number}")
    assert (adapter / "adapter_model.safetensors").stat().st_size > 100_000


def test_bad_dataset_and_bad_spec_fail_at_submission(suite, tmp_path):
    from forgeline.cli.main import app

    bad = tmp_path / "law_qa.jsonl"
    bad.write_text(
        json.dumps({"messages": [{"role": "user", "content": "q"}]})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]})
        + "\n"
    )
    ref = suite.upload(bad, "law-qa")
    with suite.trainer_client() as trainer:
        with pytest.raises(exceptions.InvalidArgument) as info:
            trainer.submit(small_spec(trainer_pb2.TRAIN_TASK_SFT, ref, "law"))
        assert [(v.field, v.description) for v in info.value.violations] == [
            (
                "spec.dataset",
                "law_qa.jsonl:1: messages: has no assistant turn with content to learn from",
            ),
            ("spec.dataset", "law_qa.jsonl:2: messages[1].content: missing"),
        ]
        spec = small_spec(trainer_pb2.TRAIN_TASK_DPO, ref, "law")
        spec.lora.target_modules[:] = ["c_attn"]
        spec.hyper_parameters.max_seq_length = 100_000
        with pytest.raises(exceptions.InvalidArgument) as info:
            trainer.submit(spec)
        fields = [v.field for v in info.value.violations]
        assert fields == [
            "spec.lora.target_modules",
            "spec.hyper_parameters.max_seq_length",
            "spec.dataset",
        ]
        assert "c_attn" in info.value.violations[0].description
        assert "records are MESSAGES" in info.value.violations[2].description
        plan = trainer.plan(spec)
        assert [p.field for p in plan.problems] == fields
        assert not list(trainer.list(labels={"never": "submitted"}))
    # The CLI finds the same problems before uploading anything.
    run = CliRunner().invoke(
        app, ["sft", "--model", BASE, "--dataset", str(bad), "--registry", suite.registry.address]
    )
    assert run.exit_code == 2
    assert "law_qa.jsonl:2: messages[1].content: missing" in run.output


def _wait_for_step(trainer: TrainerClient, job_id: str, step: int) -> int:
    seq = 0
    for event in trainer.watch(job_id):
        seq = event.seq
        if event.WhichOneof("payload") == "progress" and event.progress.step >= step:
            return seq
    raise AssertionError(f"{job_id} ended before step {step}")


def test_cancel_stops_the_workers_and_registers_nothing(suite, tmp_path, ray_cluster):
    ref = suite.upload(write_jsonl(tmp_path / "facts.jsonl", facts_rows()), "facts-small")
    spec = small_spec(trainer_pb2.TRAIN_TASK_SFT, ref, "never-registered", max_steps=400)
    with suite.trainer_client() as trainer:
        job = trainer.submit(spec)
        _wait_for_step(trainer, job.id, 1)
        trainer.cancel(job.id, "changed my mind")
        final = trainer.wait(job.id)
    assert (final.state, final.error) == (common_pb2.JOB_STATE_CANCELLED, "changed my mind")
    with suite.registry_client() as registry, pytest.raises(exceptions.NotFound):
        registry.get_version("never-registered")
    deadline = time.monotonic() + 30
    while ray_cluster.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, "the workers still hold their CPUs"
        time.sleep(0.5)


def test_a_restarted_trainer_resumes_a_sharded_job_from_its_checkpoint(suite, tmp_path):
    # One worker's resume after a SIGKILL is in test_faults.py; here, sharded state must be
    # gathered to save and re-sharded to resume.
    workers = 2
    ref = suite.upload(write_jsonl(tmp_path / "facts.jsonl", facts_rows()), "facts-small")
    name = "facts-resumed-fsdp"
    spec = small_spec(trainer_pb2.TRAIN_TASK_SFT, ref, name, max_steps=10)
    spec.checkpointing.save_every_steps = 3
    spec.distribution.strategy = trainer_pb2.DISTRIBUTION_STRATEGY_FSDP
    spec.distribution.resources.num_workers = workers
    with suite.trainer_client() as trainer:
        job = trainer.submit(spec)
        seen = _wait_for_step(trainer, job.id, 4)
    suite.trainer.stop()  # the service goes down mid-job
    suite.start_trainer()
    with suite.trainer_client() as trainer:
        later = list(trainer.watch(job.id, after_seq=seen))
        final = trainer.get(job.id)[0]
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.attempt == 2
    logs = [e.log.message for e in later if e.WhichOneof("payload") == "log"]
    resumed = [i for i, e in enumerate(later) if "resumed from the checkpoint" in e.log.message]
    assert resumed, logs
    resumed_at = int(later[resumed[0]].log.message.rsplit(" ", 1)[1])
    steps = [e.progress.step for e in later[resumed[0] :] if e.WhichOneof("payload") == "progress"]
    assert resumed_at in (3, 6)
    assert steps == list(range(resumed_at + 1, 11))
    with suite.registry_client() as registry:
        metrics = registry.get_version(name).metrics
    assert metrics["train_steps"] == 10 and metrics["world_size"] == workers


@pytest.fixture(scope="module")
def inference(suite):
    """An inference service on the suite's registry (engines start on first load)."""
    from forgeline.client import InferenceClient
    from forgeline.inference.service import create_server as create_inference

    settings = Settings.load(
        "inference",
        host="127.0.0.1",
        port=0,
        home=suite.home,
        addresses={ServiceName.REGISTRY: suite.registry.address},
    )
    server = ServerThread(lambda: create_inference(settings)[0]).start()
    with InferenceClient(server.address) as client:
        yield client
    server.stop()


def _ask(client, served: str, question: str) -> str:
    sampling = inference_pb2.SamplingParams(temperature=0, max_tokens=16)
    return "".join(client.stream_text(served, messages=[("user", question)], sampling=sampling))


def _first_loss(folder: Path) -> float:
    rows = (folder / "training" / "loss_curve.csv").read_text().splitlines()
    return float(rows[1].split(",")[1])


def test_an_adapter_is_continued_with_its_shape_and_dpo_on_it_uses_the_sft_model(
    suite, tmp_path, inference
):
    facts = suite.upload(write_jsonl(tmp_path / "facts.jsonl", facts_rows()), "facts-small")
    manners = suite.upload(write_jsonl(tmp_path / "manners.jsonl", preference_rows()), "manners")
    stage1 = small_spec(trainer_pb2.TRAIN_TASK_SFT, facts, "facts-staged", max_steps=6)
    with suite.trainer_client() as trainer:
        final = trainer.wait(trainer.submit(stage1).id)
        assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error

        # Continued: no shape given, no output name: the adapter's own shape and name.
        more = small_spec(trainer_pb2.TRAIN_TASK_SFT, facts, "", max_steps=2)
        more.base_model.CopyFrom(parse_ref("facts-staged:1"))
        more.lora.Clear()
        final = trainer.wait(trainer.submit(more).id)
        assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
        assert [format_ref(r) for r in final.outputs] == ["facts-staged:2"]

        # Another shape, or full tuning, cannot continue it.
        other = small_spec(trainer_pb2.TRAIN_TASK_SFT, facts, "x")
        other.base_model.CopyFrom(parse_ref("facts-staged:1"))
        other.lora.rank = 8
        with pytest.raises(exceptions.InvalidArgument) as info:
            trainer.submit(other)
        assert [v.field for v in info.value.violations] == ["spec.lora.rank"]
        other.lora.rank, other.tuner = 0, trainer_pb2.TUNER_FULL
        with pytest.raises(exceptions.InvalidArgument) as info:
            trainer.submit(other)
        assert [v.field for v in info.value.violations] == ["spec.tuner"]

        # DPO on the SFT adapter: the SFT model is the reference, so at the first step the
        # policy (that same model) earns no reward either way.
        dpo = small_spec(trainer_pb2.TRAIN_TASK_DPO, manners, "manners-after-sft", max_steps=1)
        dpo.base_model.CopyFrom(parse_ref("facts-staged:1"))
        dpo.lora.Clear()
        # fp32: in bf16 the policy's and the reference's passes round differently.
        dpo.hyper_parameters.precision = trainer_pb2.PRECISION_FP32
        job = trainer.submit(dpo)
        rewards = [
            (e.metrics.values["rewards/chosen"], e.metrics.values["rewards/rejected"])
            for e in trainer.watch(job.id)
            if e.WhichOneof("payload") == "metrics" and "rewards/chosen" in e.metrics.values
        ]
        assert trainer.get(job.id)[0].state == common_pb2.JOB_STATE_SUCCEEDED
    assert rewards[0] == pytest.approx((0.0, 0.0), abs=1e-4)

    with suite.registry_client() as registry:
        continued = registry.get_version("facts-staged:2")
        lineage = registry.get_lineage("facts-staged:2", registry_pb2.LINEAGE_DIRECTION_ANCESTORS)
    assert [(p.name, p.version) for p in continued.parents] == [
        (BASE, 1),
        ("facts-small", 1),
        ("facts-staged", 1),
    ]
    assert continued.metadata["continued_from"] == "facts-staged:1"
    assert {(v.model, v.number) for v in lineage.versions} >= {(BASE, 1), ("facts-staged", 1)}
    config = json.loads((suite.pull("facts-staged:2") / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == QV
    # It started from what stage 1 learned: a fresh adapter (B = 0) would score the same
    # first batch (same seed) exactly as stage 1's first step did.
    first, then = (
        _first_loss(suite.pull("facts-staged:1")),
        _first_loss(suite.pull("facts-staged:2")),
    )
    assert then < 0.9 * first, (first, then)

    # Served like any adapter, on its base.
    inference.load_model(BASE, served_name="base", engine=ENGINE)
    inference.load_adapter("facts-staged:2", served_name="staged")
    assert _ask(inference, "staged", FACTS[0][0]) != _ask(inference, "base", FACTS[0][0])


def test_continued_pretraining_on_plain_text(suite, tmp_path):
    rows = [{"text": f"{q} {a}"} for q, a, _ in FACTS] * 4
    ref = suite.upload(write_jsonl(tmp_path / "notes.jsonl", rows), "zorblax-notes")
    spec = small_spec(
        trainer_pb2.TRAIN_TASK_PRETRAIN, ref, "zorblax-pt", max_steps=12, learning_rate=3e-3
    )
    with suite.trainer_client() as trainer:
        final = trainer.wait(trainer.submit(spec).id)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    with suite.registry_client() as registry:
        version = registry.get_version("zorblax-pt:1")
    assert (version.kind, version.metadata["task"]) == (
        registry_pb2.VERSION_KIND_ADAPTER,
        "pretrain",
    )
    assert version.metrics["loss"] < 0.8 * _first_loss(suite.pull("zorblax-pt:1"))


def test_full_tuning_registers_a_merged_model_that_vllm_serves(suite, tmp_path, inference):
    from safetensors.torch import load_file

    ref = suite.upload(write_jsonl(tmp_path / "facts.jsonl", facts_rows()), "facts-small")
    spec = small_spec(trainer_pb2.TRAIN_TASK_SFT, ref, "facts-full", max_steps=2)
    spec.tuner = trainer_pb2.TUNER_FULL
    spec.lora.Clear()
    with suite.trainer_client() as trainer:
        final = trainer.wait(trainer.submit(spec).id)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    with suite.registry_client() as registry:
        version = registry.get_version("facts-full:1")
    assert version.kind == registry_pb2.VERSION_KIND_MERGED
    tuned = load_file(suite.pull("facts-full:1") / "model.safetensors")
    base = load_file(suite.pull(f"{BASE}:1") / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(tuned[name], base[name])

    served = inference.load_model("facts-full:1", served_name="full", engine=ENGINE)
    assert (served.ref.name, served.version) == ("facts-full", 1)
    assert served.state == inference_pb2.SERVED_MODEL_STATE_READY
    assert _ask(inference, "full", FACTS[0][0])
