"""Direct preference optimization (Rafailov et al., 2023).

For each pair the policy and a frozen reference score the chosen and the rejected answer
(summed log-probabilities of the answer tokens). With
`h = (log pi(c) - log pi(r)) - (log ref(c) - log ref(r))` the losses are, as in TRL:
SIGMOID `-log sigmoid(beta h)` (with label smoothing `e`: `-(1-e) log sigmoid(beta h) -
e log sigmoid(-beta h)`), HINGE `max(0, 1 - beta h)`, IPO `(h - 1/(2 beta))^2` on
length-averaged log-probabilities, and ROBUST the unbiased label-noise correction.
The implicit rewards `beta (log pi - log ref)` of both answers, their margin and how often
the chosen one wins are reported every step.

The reference is another registry model when the job names one; when the job continues an
adapter (DPO after SFT), the model that adapter makes (base and adapter merged, frozen);
otherwise the base model itself: for adapter tuners the policy with its adapter disabled
(no second copy in memory), for full tuning a frozen copy of the base. Both models' heads
score the answer tokens in chunks (`lm_loss`) rather than returning logits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from forgeline.trainer import data as data_mod
from forgeline.trainer.config import DpoLoss, Task, TrainConfig, Tuner
from forgeline.trainer.data import IGNORE_INDEX, TokenizedPair
from forgeline.trainer.distributed import all_reduce_sum, build_train_engine, seeded
from forgeline.trainer.modeling import (
    load_for_training,
    load_frozen,
    load_tokenizer,
    torch_dtype,
    trainable_parameters,
)
from forgeline.trainer.plan import steps_for
from forgeline.trainer.recipes.common import (
    ENGINE_STATE,
    MicroBatches,
    Throughput,
    TrainState,
    checkpoint_due,
    load_rng,
    peak_rss_bytes,
    report_every,
    write_checkpoint,
)
from forgeline.trainer.recipes.lm_loss import (
    FULL_LOGITS_NOTE,
    install_logprob_head,
    next_token_logps,
)
from forgeline.trainer.worker import StopRequested, WorkerEnv

log = logging.getLogger(__name__)


def collate_pairs(
    pairs: list[TokenizedPair], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """One batch of 2n rows: the n chosen sequences, then the n rejected ones."""
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [
        (p.prompt_ids, p.rejected_ids) for p in pairs
    ]
    width = max(len(a) + len(b) for a, b in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, answer) in enumerate(rows):
        n = len(prompt) + len(answer)
        ids[i, :n] = torch.tensor(prompt + answer)
        labels[i, len(prompt) : n] = torch.tensor(answer)
        mask[i, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def answer_logps(
    module: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs `module` on a pair batch: per-row sums of the answer tokens' log-probabilities
    and the answer token counts."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logps = next_token_logps(module, inputs, batch["labels"])
    return logps.sum(-1), (batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1)


def dpo_losses(
    policy: tuple[torch.Tensor, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
    beta: float,
    loss: DpoLoss,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair DPO losses from (chosen, rejected) log-probabilities of policy and reference."""
    h = (policy[0] - policy[1]) - (reference[0] - reference[1])
    if loss is DpoLoss.SIGMOID:
        e = label_smoothing
        return -F.logsigmoid(beta * h) * (1 - e) - F.logsigmoid(-beta * h) * e
    if loss is DpoLoss.HINGE:
        return torch.relu(1 - beta * h)
    if loss is DpoLoss.IPO:
        return (h - 1 / (2 * beta)) ** 2
    e = label_smoothing
    return (-F.logsigmoid(beta * h) * (1 - e) + F.logsigmoid(-beta * h) * e) / (1 - 2 * e)


class DPORecipe:
    """Trains a policy to prefer the chosen answers over the rejected ones.

    Args:
        cfg: The job's resolved configuration.
        env: Rank, device, inputs, reporting and checkpoint storage.
    """

    def __init__(self, cfg: TrainConfig, env: WorkerEnv):
        assert cfg.task is Task.DPO, cfg.task
        self.cfg = cfg
        self.env = env
        self.state = TrainState()
        self.baseline_rss = peak_rss_bytes()
        self.reference: Any = None

    def setup(self) -> None:
        """Tokenizes the pairs, loads policy and reference, builds the engine, resumes."""
        cfg, env = self.cfg, self.env
        self.tokenizer = load_tokenizer(env.inputs.base)
        dataset = data_mod.load_dataset(env.inputs.dataset, Task.DPO, cfg.data_format)
        if not dataset.ok:
            raise ValueError("invalid dataset: " + "; ".join(dataset.describe_problems()))
        pairs = data_mod.tokenize_dataset(
            self.tokenizer, dataset.examples, cfg.hyper.max_seq_length
        )
        self.batches = MicroBatches(
            pairs, cfg.hyper.batch_size, env.rank, env.world_size, cfg.hyper.seed
        )
        self.total_steps = steps_for(len(pairs), cfg)
        self.steps_per_epoch = math.ceil(self.batches.per_epoch / cfg.hyper.grad_accum)
        with seeded(cfg.hyper.seed):
            self.model = load_for_training(
                env.inputs.base, cfg, device=env.device, adapter=env.inputs.adapter
            )
        frozen = {"dtype": torch_dtype(cfg.hyper.precision), "device": env.device}
        if env.inputs.reference is not None:
            self.reference = load_frozen(env.inputs.reference, **frozen)
        elif env.inputs.adapter is not None:  # a continued SFT adapter: the SFT model
            self.reference = load_frozen(env.inputs.base, adapter=env.inputs.adapter, **frozen)
        elif cfg.tuner is Tuner.FULL:
            self.reference = load_frozen(env.inputs.base, **frozen)
        if not install_logprob_head(self.model):
            env.log(FULL_LOGITS_NOTE)
        if self.reference is not None:
            install_logprob_head(self.reference)
        self.engine = build_train_engine(self.model, cfg, self.total_steps, env.device)
        trainable, total = trainable_parameters(self.model)
        env.log(
            f"DPO {cfg.tuner.name} ({cfg.dpo.loss.name}, beta {cfg.dpo.beta}): {len(pairs)} "
            f"pairs, {self.total_steps} steps, {trainable:,} of {total:,} parameters "
            f"trainable, reference: "
            f"{'a frozen model' if self.reference is not None else 'the base (adapter off)'}"
        )
        with env.restore_checkpoint() as checkpoint:
            if checkpoint is not None:
                self.engine.load_state(checkpoint / ENGINE_STATE)
                self.state = TrainState.read(checkpoint)
                load_rng(checkpoint, env.rank)
                env.log(f"resumed from the checkpoint at step {self.state.step}")

    def _reference_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), self.engine.autocast():
            if self.reference is not None:
                return answer_logps(self.reference, batch)
            with self.model.disable_adapter():
                return answer_logps(self.model, batch)

    def train(self) -> None:
        """The training loop: one optimizer step per iteration, until `total_steps`."""
        cfg, env, engine = self.cfg, self.env, self.engine
        beta, pad_id = cfg.dpo.beta, self.tokenizer.pad_token_id
        stream = self.batches.stream(start=self.state.micro_batches)
        throughput = Throughput()
        every = report_every(self.total_steps)
        engine.module.train()
        while self.state.step < self.total_steps:
            if env.stop_requested():
                raise StopRequested()
            micro = [
                collate_pairs(next(stream), pad_id, env.device) for _ in range(cfg.hyper.grad_accum)
            ]
            (pairs_total,) = all_reduce_sum(
                [sum(b["input_ids"].shape[0] // 2 for b in micro)], env.device
            )
            sums = {"loss": 0.0, "chosen": 0.0, "rejected": 0.0, "wins": 0.0, "tokens": 0.0}
            for i, batch in enumerate(micro):
                n = batch["input_ids"].shape[0] // 2
                ref_logps, ref_counts = self._reference_logps(batch)
                with engine.accumulating(last=i == len(micro) - 1):
                    with engine.autocast():
                        logps, counts = answer_logps(engine.module, batch)
                    if cfg.dpo.loss is DpoLoss.IPO:
                        # IPO compares length-averaged log-probabilities.
                        logps, ref_logps = logps / counts, ref_logps / ref_counts
                    policy, reference = (logps[:n], logps[n:]), (ref_logps[:n], ref_logps[n:])
                    losses = dpo_losses(
                        policy, reference, beta, cfg.dpo.loss, cfg.dpo.label_smoothing
                    )
                    engine.backward(losses.sum() * env.world_size / max(pairs_total, 1.0))
                chosen = beta * (policy[0] - reference[0]).detach()
                rejected = beta * (policy[1] - reference[1]).detach()
                sums["loss"] += losses.sum().item()
                sums["chosen"] += chosen.sum().item()
                sums["rejected"] += rejected.sum().item()
                sums["wins"] += (chosen > rejected).float().sum().item()
                sums["tokens"] += float(batch["attention_mask"].sum())
                del logps, losses
            grad_norm = engine.step()
            keys = list(sums)
            totals = dict(
                zip(keys, all_reduce_sum([sums[k] for k in keys], env.device), strict=True)
            )
            self.state.step += 1
            self.state.micro_batches += len(micro)
            self.state.tokens += int(totals["tokens"])
            count = max(pairs_total, 1.0)
            metrics = {
                "loss": totals["loss"] / count,
                "rewards/chosen": totals["chosen"] / count,
                "rewards/rejected": totals["rejected"] / count,
                "rewards/margins": (totals["chosen"] - totals["rejected"]) / count,
                "rewards/accuracies": totals["wins"] / count,
                "learning_rate": engine.lr,
                "grad_norm": grad_norm,
                "tokens_per_second": throughput.add(int(totals["tokens"])),
                "epoch": self.state.micro_batches / self.batches.per_epoch,
            }
            self.state.history.append({"step": self.state.step, **metrics})
            if self.state.step % every == 0 or self.state.step == self.total_steps:
                env.report(self.state.step, self.total_steps, metrics)
            if checkpoint_due(
                self.state.step,
                self.total_steps,
                cfg.checkpoints.save_every_steps,
                self.steps_per_epoch,
            ):
                self.save_checkpoint()

    def save_checkpoint(self, final: bool = False) -> None:
        """Writes and persists a checkpoint; the final one also holds the trained model."""
        write_checkpoint(
            self.engine, self.env, self.state, self.tokenizer, self.baseline_rss, final
        )

    def cleanup(self) -> None:
        """Frees the engine and both models."""
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
        self.model = self.engine = self.reference = None
        with contextlib.suppress(Exception):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def run(cfg: TrainConfig, env: WorkerEnv) -> TrainState:
    """Runs the recipe start to finish: setup, train, final checkpoint, cleanup."""
    recipe = DPORecipe(cfg, env)
    try:
        start = time.perf_counter()
        recipe.setup()
        recipe.train()
        recipe.save_checkpoint(final=True)
        env.log(f"finished {recipe.state.step} steps in {time.perf_counter() - start:.1f}s")
        return recipe.state
    finally:
        recipe.cleanup()
