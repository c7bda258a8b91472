"""Supervised fine-tuning and continued pre-training.

SFT renders each conversation with the tokenizer's chat template and takes the loss on the
assistant turns only; continued pre-training takes it on every token of plain text. Both
optionally pack short sequences into full rows. The loss of a step is the mean over every
target token of the step on every worker (summed per micro-batch, divided by the global
count), so it does not depend on how the batch is split into micro-batches or workers.
The model's head scores the targets in chunks (`lm_loss`) rather than returning logits.
"""

from __future__ import annotations

import logging
import math
import time

import torch

from forgeline.trainer import data as data_mod
from forgeline.trainer.config import Task, TrainConfig
from forgeline.trainer.distributed import all_reduce_sum, build_train_engine, seeded
from forgeline.trainer.modeling import load_for_training, load_tokenizer, trainable_parameters
from forgeline.trainer.plan import steps_for
from forgeline.trainer.recipes.common import (
    ENGINE_STATE,
    MicroBatches,
    Throughput,
    TrainState,
    checkpoint_due,
    collate_lm,
    load_rng,
    peak_rss_bytes,
    real_tokens,
    report_every,
    target_count,
    write_checkpoint,
)
from forgeline.trainer.recipes.lm_loss import (
    FULL_LOGITS_NOTE,
    install_logprob_head,
    next_token_logps,
)
from forgeline.trainer.worker import StopRequested, WorkerEnv

log = logging.getLogger(__name__)


class SFTRecipe:
    """Fine-tunes a causal LM on conversations (SFT) or plain text (PRETRAIN).

    Args:
        cfg: The job's resolved configuration.
        env: Rank, device, inputs, reporting and checkpoint storage.
    """

    def __init__(self, cfg: TrainConfig, env: WorkerEnv):
        assert cfg.task in (Task.SFT, Task.PRETRAIN), cfg.task
        self.cfg = cfg
        self.env = env
        self.state = TrainState()
        self.baseline_rss = peak_rss_bytes()

    def setup(self) -> None:
        """Tokenizes the data, loads the model with its tuner, builds the engine, resumes."""
        cfg, env = self.cfg, self.env
        self.tokenizer = load_tokenizer(env.inputs.base)
        dataset = data_mod.load_dataset(env.inputs.dataset, cfg.task, cfg.data_format)
        if not dataset.ok:
            raise ValueError("invalid dataset: " + "; ".join(dataset.describe_problems()))
        max_len = cfg.hyper.max_seq_length
        items = data_mod.tokenize_dataset(self.tokenizer, dataset.examples, max_len)
        rows = data_mod.pack(items, max_len) if cfg.hyper.packing else items
        self.batches = MicroBatches(
            rows, cfg.hyper.batch_size, env.rank, env.world_size, cfg.hyper.seed
        )
        self.total_steps = steps_for(len(rows), cfg)
        self.steps_per_epoch = math.ceil(self.batches.per_epoch / cfg.hyper.grad_accum)
        with seeded(cfg.hyper.seed):
            self.model = load_for_training(
                env.inputs.base, cfg, device=env.device, adapter=env.inputs.adapter
            )
        if not install_logprob_head(self.model):
            env.log(FULL_LOGITS_NOTE)
        self.engine = build_train_engine(self.model, cfg, self.total_steps, env.device)
        trainable, total = trainable_parameters(self.model)
        env.log(
            f"{cfg.task.name} {cfg.tuner.name}: {len(rows)} sequences of <= {max_len} tokens, "
            f"{self.total_steps} steps, {trainable:,} of {total:,} parameters trainable, "
            f"{env.world_size} worker(s), {cfg.dist.strategy.name}"
        )
        with env.restore_checkpoint() as checkpoint:
            if checkpoint is not None:
                self.engine.load_state(checkpoint / ENGINE_STATE)
                self.state = TrainState.read(checkpoint)
                load_rng(checkpoint, env.rank)
                env.log(f"resumed from the checkpoint at step {self.state.step}")

    def train(self) -> None:
        """The training loop: one optimizer step per iteration, until `total_steps`."""
        cfg, env, engine = self.cfg, self.env, self.engine
        pad_id = self.tokenizer.pad_token_id
        stream = self.batches.stream(start=self.state.micro_batches)
        throughput = Throughput()
        every = report_every(self.total_steps)
        engine.module.train()
        while self.state.step < self.total_steps:
            if env.stop_requested():
                raise StopRequested()
            micro = [
                collate_lm(next(stream), pad_id, env.device) for _ in range(cfg.hyper.grad_accum)
            ]
            targets, tokens = all_reduce_sum(
                [sum(target_count(b) for b in micro), sum(real_tokens(b, pad_id) for b in micro)],
                env.device,
            )
            loss_sum = 0.0
            for i, batch in enumerate(micro):
                labels = batch.pop("labels")
                with engine.accumulating(last=i == len(micro) - 1):
                    with engine.autocast():
                        logps = next_token_logps(engine.module, batch, labels)
                    loss = -logps.sum()
                    # Summed token losses over the global target count: a true mean per step.
                    engine.backward(loss * env.world_size / max(targets, 1.0))
                loss_sum += loss.item()
                del logps, loss
            grad_norm = engine.step()
            (loss_total,) = all_reduce_sum([loss_sum], env.device)
            self.state.step += 1
            self.state.micro_batches += len(micro)
            self.state.tokens += int(tokens)
            rate = throughput.add(int(tokens))
            metrics = {
                "loss": loss_total / max(targets, 1.0),
                "learning_rate": engine.lr,
                "grad_norm": grad_norm,
                "tokens_per_second": rate,
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
        """Frees the engine and the model."""
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
        self.model = None
        self.engine = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run(cfg: TrainConfig, env: WorkerEnv) -> TrainState:
    """Runs the recipe start to finish: setup, train, final checkpoint, cleanup."""
    recipe = SFTRecipe(cfg, env)
    try:
        start = time.perf_counter()
        recipe.setup()
        recipe.train()
        recipe.save_checkpoint(final=True)
        env.log(f"finished {recipe.state.step} steps in {time.perf_counter() - start:.1f}s")
        return recipe.state
    finally:
        recipe.cleanup()
