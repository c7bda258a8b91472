"""Recipes run in this process on the bundled model: resuming, packing, the DPO loss."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from forgeline.trainer.config import (
    CheckpointSettings,
    DpoLoss,
    HyperSettings,
    LoraSettings,
    Task,
    TrainConfig,
)
from forgeline.trainer.recipes import dpo, sft
from forgeline.trainer.worker import Inputs, LocalEnv, StopRequested

CFG = TrainConfig(
    task=Task.SFT,
    lora=LoraSettings(rank=4, alpha=8, target_modules=("q_proj", "v_proj")),
    hyper=HyperSettings(max_steps=4, learning_rate=1e-3, batch_size=2, max_seq_length=64),
    checkpoints=CheckpointSettings(save_every_steps=2),
)


class StopAfter(LocalEnv):
    """Asks the recipe to stop once `steps` steps were reported."""

    def __init__(self, *args, steps: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = steps

    def stop_requested(self) -> bool:
        return len(self.reports) >= self.steps


class KeepMetrics(LocalEnv):
    """Keeps the metrics persisted with every checkpoint."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved: list[dict[str, float]] = []

    def save_checkpoint(self, folder: Path, metrics: dict[str, float]) -> None:
        self.saved.append(dict(metrics))
        super().save_checkpoint(folder, metrics)


def losses(env: LocalEnv) -> dict[int, float]:
    return {step: metrics["loss"] for step, _, metrics in env.reports}


def test_a_resumed_run_continues_exactly_where_it_stopped(tmp_path, bundled_model, tiny_facts):
    inputs = Inputs(base=bundled_model, dataset=tiny_facts)
    whole = LocalEnv(inputs, tmp_path / "whole")
    sft.run(CFG, whole)

    first = StopAfter(inputs, tmp_path / "split", steps=2)
    with pytest.raises(StopRequested):
        sft.run(CFG, first)
    assert first.latest() is not None  # the step-2 checkpoint
    second = LocalEnv(inputs, tmp_path / "split")
    sft.run(CFG, second)

    assert "resumed from the checkpoint at step 2" in second.logs
    assert sorted(losses(first)) == [1, 2] and sorted(losses(second)) == [3, 4]
    expected = losses(whole)
    for step, loss in {**losses(first), **losses(second)}.items():
        assert loss == pytest.approx(expected[step], rel=1e-4), step
    adapter = second.latest() / "model"
    assert (adapter / "adapter_model.safetensors").exists()


def test_packing_trains_on_fewer_rows(tmp_path, bundled_model, tiny_facts):
    cfg = replace(CFG, hyper=replace(CFG.hyper, packing=True, max_steps=1, max_seq_length=128))
    env = LocalEnv(Inputs(base=bundled_model, dataset=tiny_facts), tmp_path / "ck")
    recipe = sft.SFTRecipe(cfg, env)
    recipe.setup()
    try:
        # 16 conversations of ~50 tokens fit in far fewer rows of 128.
        assert len(recipe.batches.items) < 16
        recipe.train()
        assert env.reports[-1][2]["loss"] > 0
    finally:
        recipe.cleanup()


def test_dpo_losses_match_their_definitions():
    chosen, rejected = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    ref_c, ref_r = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    h = (chosen - rejected) - (ref_c - ref_r)
    beta = 0.5
    sig = dpo.dpo_losses((chosen, rejected), (ref_c, ref_r), beta, DpoLoss.SIGMOID)
    assert torch.allclose(sig, -torch.nn.functional.logsigmoid(beta * h))
    hinge = dpo.dpo_losses((chosen, rejected), (ref_c, ref_r), beta, DpoLoss.HINGE)
    assert torch.allclose(hinge, torch.relu(1 - beta * h))
    ipo = dpo.dpo_losses((chosen, rejected), (ref_c, ref_r), beta, DpoLoss.IPO)
    assert torch.allclose(ipo, (h - 1 / (2 * beta)) ** 2)
    robust = dpo.dpo_losses((chosen, rejected), (ref_c, ref_r), beta, DpoLoss.ROBUST, 0.0)
    assert torch.allclose(robust, sig)


def test_checkpoint_layout(tmp_path: Path, bundled_model, tiny_facts):
    cfg = replace(CFG, hyper=replace(CFG.hyper, max_steps=1))
    env = KeepMetrics(Inputs(base=bundled_model, dataset=tiny_facts), tmp_path / "ck")
    sft.run(cfg, env)
    names = sorted(p.name for p in env.latest().iterdir())
    assert names == ["final", "model", "rng-0.pt", "state", "trainer_state.json"]
    # What the runner copies onto the registered version: measured, not from the spec.
    (final,) = env.saved
    assert final["step"] == 1 and final["world_size"] == 1
    assert final["peak_rss_bytes"] >= final["baseline_rss_bytes"] > 0


def test_a_packed_row_gives_each_sequence_the_logits_it_has_alone(bundled_model):
    from forgeline.trainer.data import Tokenized, pack
    from forgeline.trainer.modeling import load_for_training
    from forgeline.trainer.recipes.common import collate_lm

    # As trained: without a KV cache, transformers reads restarting positions as boundaries.
    model = load_for_training(bundled_model, CFG, device=torch.device("cpu"))
    seqs = [Tokenized(list(range(100 + 7 * n, 100 + 8 * n)), [1] * n) for n in (9, 5, 12)]
    (row,) = pack(seqs, 32)
    batch = collate_lm([row], pad_id=0, device=torch.device("cpu"))
    assert "attention_mask" not in batch  # the positions alone mark the boundaries
    batch.pop("labels")
    with torch.no_grad():
        packed = model(**batch).logits[0]
        start = 0
        for seq in sorted(seqs, key=lambda s: len(s.input_ids), reverse=True):
            n = len(seq.input_ids)
            alone = model(input_ids=torch.tensor([seq.input_ids])).logits[0]
            torch.testing.assert_close(packed[start : start + n], alone, atol=1e-4, rtol=1e-4)
            start += n
