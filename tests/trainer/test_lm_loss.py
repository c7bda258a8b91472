"""The chunked next-token log-probabilities: exact against full logits, wired into the
model's head without changing what is saved, lighter on memory, and the same under the
sharded engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from forgeline.trainer.config import HyperSettings, LoraSettings, Task, TrainConfig, Tuner
from forgeline.trainer.data import IGNORE_INDEX
from forgeline.trainer.modeling import load_for_training
from forgeline.trainer.recipes import dpo, sft
from forgeline.trainer.recipes.lm_loss import (
    FULL_LOGITS_NOTE,
    LogProbHead,
    chunked_logps,
    install_logprob_head,
    next_token_logps,
    shift_labels,
)
from forgeline.trainer.worker import Inputs, LocalEnv
from tests.trainer.datasets import facts_rows, preference_rows, write_jsonl

CFG = TrainConfig(
    task=Task.SFT,
    lora=LoraSettings(rank=4, alpha=8, target_modules=("q_proj", "v_proj")),
    hyper=HyperSettings(max_steps=2, learning_rate=1e-3, batch_size=2, max_seq_length=64),
)


def problem(bias: bool, n: int = 23, hidden: int = 16, vocab: int = 50):
    """Hidden states, head weight (and bias), targets with ignored rows, an upstream grad."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(n, hidden, generator=gen, requires_grad=True)
    w = torch.randn(vocab, hidden, generator=gen, requires_grad=True)
    b = torch.randn(vocab, generator=gen, requires_grad=True) if bias else None
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[::3] = IGNORE_INDEX
    return h, w, b, targets, torch.randn(n, generator=gen)


@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 23, 64])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_chunked_logps_equal_cross_entropy_on_full_logits(chunk_rows, bias):
    h, w, b, targets, upstream = problem(bias)
    params = [h, w] + ([b] if bias else [])
    expected = -F.cross_entropy(F.linear(h, w, b), targets, reduction="none")
    got = chunked_logps(h, w, b, targets, chunk_rows)

    torch.testing.assert_close(got, expected)
    assert (got[targets == IGNORE_INDEX] == 0).all()
    # A different weight per row, as DPO's per-sequence sums give.
    want = torch.autograd.grad((expected * upstream).sum(), params)
    have = torch.autograd.grad((got * upstream).sum(), params)
    for name, x, y in zip(["hidden", "weight", "bias"], have, want, strict=False):
        torch.testing.assert_close(x, y, msg=name)
    assert (have[0][targets == IGNORE_INDEX] == 0).all()


def test_a_frozen_weight_gets_no_gradient():
    h, w, _, targets, _ = problem(bias=False)
    w.requires_grad_(False)
    chunked_logps(h, w, None, targets, 5).sum().backward()
    assert w.grad is None and h.grad is not None


def test_under_autocast_the_projection_runs_as_the_plain_head_would():
    h, w, _, targets, _ = problem(bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = -F.cross_entropy(F.linear(h, w).float(), targets, reduction="none")
        got = chunked_logps(h, w, None, targets, 4)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def lm_batch(vocab: int, rows: int = 2, width: int = 40) -> tuple[dict, torch.Tensor]:
    """A batch with a prompt (no loss) in row 0 and padding at the end of row 1."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (rows, width), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, -8:] = 0
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[0, :10] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask}, labels


def lora_model(base: Path, cfg: TrainConfig = CFG):
    """The LoRA model of `cfg`, with non-zero B matrices so that every adapter gets a grad."""
    torch.manual_seed(0)
    model = load_for_training(base, cfg, device=torch.device("cpu"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    return model


def loss_and_grads(model, inputs, labels) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = -next_token_logps(model, inputs, labels).sum() / (labels[:, 1:] != IGNORE_INDEX).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads


def test_a_lora_step_on_smollm2_has_the_plain_loss_and_gradients(bundled_model):
    model = lora_model(bundled_model)
    inputs, labels = lm_batch(model.config.vocab_size)
    plain_loss, plain_grads = loss_and_grads(model, inputs, labels)

    assert install_logprob_head(model)
    head = model.get_output_embeddings()
    assert isinstance(head, LogProbHead)
    assert head.weight is model.get_input_embeddings().weight  # still tied
    loss, grads = loss_and_grads(model, inputs, labels)

    assert loss == pytest.approx(plain_loss, rel=1e-5)
    assert sorted(grads) == sorted(plain_grads) and len(grads) == 4 * 30  # A and B, q and v
    # Summation order differs, and 30 layers of backward amplify it: relative to the norm.
    for name, grad in grads.items():
        plain = plain_grads[name]
        assert (grad - plain).norm() <= 1e-4 * plain.norm(), name
    with torch.no_grad():  # outside scoring the head gives logits again
        assert model(**inputs).logits.shape == (*labels.shape, model.config.vocab_size)


def old_answer_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DPO's answer log-probability sums as computed from full logits before."""
    logits, labels = logits[:, :-1, :].float(), labels[:, 1:]
    mask = labels != IGNORE_INDEX
    logps = torch.gather(logits.log_softmax(-1), 2, labels.masked_fill(~mask, 0).unsqueeze(-1))
    return (logps.squeeze(-1) * mask).sum(-1)


def test_dpo_answer_logps_of_policy_and_reference_match_full_logits(bundled_model):
    model = lora_model(bundled_model)
    inputs, labels = lm_batch(model.config.vocab_size, rows=4)
    batch = {**inputs, "labels": labels}
    with torch.no_grad():
        policy = old_answer_logps(model(**inputs).logits, labels)
        with model.disable_adapter():
            reference = old_answer_logps(model(**inputs).logits, labels)
    assert install_logprob_head(model)

    sums, counts = dpo.answer_logps(model, batch)
    torch.testing.assert_close(sums.detach(), policy, rtol=1e-5, atol=1e-4)
    assert counts.tolist() == (labels[:, 1:] != IGNORE_INDEX).sum(-1).tolist()
    with torch.no_grad(), model.disable_adapter():
        ref_sums, _ = dpo.answer_logps(model, batch)
    torch.testing.assert_close(ref_sums, reference, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(ref_sums, sums.detach())  # the adapter does change them


def saved_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_head_changes_nothing_that_is_saved(bundled_model, tmp_path):
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(bundled_model, dtype=torch.float32)
    adapted = lora_model(bundled_model)
    ids = torch.tensor([[1, 2, 3, 4]])
    for name, model in (("full", full), ("adapter", adapted)):
        keys = list(model.state_dict())
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        model.save_pretrained(tmp_path / name / "before")
        assert install_logprob_head(model)
        model.tie_weights()
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
        assert list(model.state_dict()) == keys
        with torch.no_grad():
            assert torch.equal(model(input_ids=ids).logits, logits)
        model.save_pretrained(tmp_path / name / "after")
        before = saved_files(tmp_path / name / "before")
        assert saved_files(tmp_path / name / "after") == before, name
    assert "model.safetensors" in before or "adapter_model.safetensors" in before


@pytest.mark.parametrize(
    "lora",
    [
        LoraSettings(rank=4, alpha=8, target_modules=("q_proj", "lm_head")),
        LoraSettings(rank=4, alpha=8, target_modules=("q_proj",), modules_to_save=("lm_head",)),
    ],
    ids=["lora-on-head", "head-trained-as-a-copy"],
)
def test_a_head_that_is_not_plain_linear_keeps_full_logits(bundled_model, lora):
    model = lora_model(bundled_model, TrainConfig(task=Task.SFT, lora=lora, hyper=CFG.hyper))
    assert not install_logprob_head(model)
    assert not any(isinstance(m, LogProbHead) for m in model.modules())
    inputs, labels = lm_batch(model.config.vocab_size)
    logps = next_token_logps(model, inputs, labels)
    assert logps.shape == labels.shape and (logps[shift_labels(labels) == IGNORE_INDEX] == 0).all()


@pytest.mark.parametrize(
    ("task", "tuner"),
    [(Task.SFT, Tuner.LORA), (Task.DPO, Tuner.LORA), (Task.DPO, Tuner.FULL)],
    ids=["sft-lora", "dpo-lora", "dpo-full"],
)
def test_recipes_report_the_metrics_of_the_plain_loss(
    tmp_path, bundled_model, monkeypatch, task, tuner
):
    rows = facts_rows() if task is Task.SFT else preference_rows()
    inputs = Inputs(base=bundled_model, dataset=write_jsonl(tmp_path / "data.jsonl", rows))
    lr = 1e-3 if tuner.adapter else 1e-5
    cfg = replace(CFG, task=task, tuner=tuner, hyper=replace(CFG.hyper, learning_rate=lr))
    recipe = sft if task is Task.SFT else dpo
    chunked = LocalEnv(inputs, tmp_path / "chunked")
    recipe.run(cfg, chunked)
    monkeypatch.setattr(recipe, "install_logprob_head", lambda model: False)
    plain = LocalEnv(inputs, tmp_path / "plain")
    recipe.run(cfg, plain)

    assert FULL_LOGITS_NOTE in plain.logs and FULL_LOGITS_NOTE not in chunked.logs
    assert len(plain.reports) == 2
    for (_, _, got), (step, _, want) in zip(chunked.reports, plain.reports, strict=True):
        assert sorted(got) == sorted(want)
        for key in want.keys() - {"tokens_per_second"}:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), (step, key)


def saved_activation_bytes(model, inputs, labels) -> int:
    """Bytes of the distinct tensors, weights aside, autograd keeps for backward."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        next_token_logps(model, inputs, labels).sum().backward()
    return sum(storages.values())


def test_the_chunked_head_keeps_no_logits_for_backward(bundled_model):
    model = lora_model(bundled_model)
    inputs, labels = lm_batch(model.config.vocab_size, rows=2, width=64)
    plain = saved_activation_bytes(model, inputs, labels)
    assert install_logprob_head(model)
    chunked = saved_activation_bytes(model, inputs, labels)
    # The plain path keeps a log-softmax of every logit (fp32); the chunked head keeps its
    # input (fp32 here, which the frozen plain head did not need) and three scalars a row.
    logits = labels.numel() * model.config.vocab_size * 4
    extra = labels.numel() * (model.config.hidden_size * 4 + 4 + 8 + 8)
    assert plain - chunked >= logits - extra


ENGINE_STEPS = """
import json, os, sys
from pathlib import Path

import torch
import torch.distributed as dist

os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3], DS_ACCELERATOR="cpu")
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo", rank=0, world_size=1)

from dataclasses import replace
from forgeline.trainer.config import DistSettings, Strategy
from forgeline.trainer.distributed import FsdpEngine, build_train_engine
from forgeline.trainer.recipes.lm_loss import install_logprob_head, next_token_logps
from tests.trainer.test_lm_loss import CFG, lm_batch, lora_model

strategy = sys.argv[2]
if strategy == "fsdp":
    cfg = replace(CFG, dist=DistSettings(strategy=Strategy.FSDP))
else:
    cfg = replace(CFG, dist=DistSettings(strategy=Strategy.DEEPSPEED, zero_stage=3))
cpu = torch.device("cpu")
out = {}
for chunked in (False, True):
    model = lora_model(Path(sys.argv[1]), cfg)
    if chunked:
        assert install_logprob_head(model)
    # FSDP on one worker: the engine itself, which the job would only build for several.
    build = FsdpEngine if strategy == "fsdp" else build_train_engine
    engine = build(model, cfg, 2, cpu)
    inputs, labels = lm_batch(model.config.vocab_size)
    count = (labels[:, 1:] != -100).sum()
    steps = []
    for _ in range(2):
        with engine.accumulating(last=True):
            loss = -next_token_logps(engine.module, inputs, labels).sum() / count
            engine.backward(loss)
        steps.append([loss.item(), engine.step()])
    engine.close()
    out["chunked" if chunked else "plain"] = steps
print(json.dumps(out))
"""


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_sharded_engines_give_the_plain_losses_and_gradient_norms(bundled_model, strategy):
    from forgeline.common.processes import free_port

    # Its own process: FSDP and DeepSpeed need a process group, which would outlive the test.
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", ENGINE_STEPS, str(bundled_model), strategy, str(free_port())],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for (loss, norm), (plain_loss, plain_norm) in zip(
        result["chunked"], result["plain"], strict=True
    ):
        assert loss == pytest.approx(plain_loss, rel=1e-5)
        assert norm == pytest.approx(plain_norm, rel=1e-4)
