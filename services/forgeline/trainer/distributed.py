"""The distribution strategies behind one small interface the recipes train through.

A recipe's loop calls `engine.module(...)` for the forward pass, `engine.backward(loss)`
for each micro-batch (inside `engine.accumulating(last)`), and `engine.step()` once per
optimizer step; `build_train_engine` picks the engine of the job's strategy.
`TorchEngine` covers one worker and DDP (gradients all-reduced by PyTorch), `FsdpEngine`
shards over the workers with PyTorch's `fully_shard`, and
`forgeline.trainer.deepspeed_engine.DeepSpeedEngine` covers ZeRO stages 0-3.

Loss normalisation is the caller's: recipes divide summed token losses by the global
number of target tokens of the step, so neither engine rescales by the accumulation steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from forgeline.trainer.config import OptimizerKind, Precision, Scheduler, Strategy, TrainConfig
from forgeline.trainer.state_files import load_plain_state

if TYPE_CHECKING:
    from forgeline.trainer.deepspeed_engine import DeepSpeedEngine

log = logging.getLogger(__name__)

STATE_FILE = "engine.pt"
# Warmup-stable-decay: the share of the steps spent decaying, and the rate it decays to.
WSD_DECAY_FRACTION = 0.2
WSD_MIN_LR_RATIO = 0.1


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sums floats over every worker (identity on one worker)."""
    if world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Biases and norm scales are not decayed (the usual AdamW practice).
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over the model's trainable parameters."""
    groups = _param_groups(model, cfg.hyper.weight_decay)
    lr = cfg.hyper.learning_rate
    kind = cfg.hyper.optimizer
    if kind is OptimizerKind.ADAMW:
        return torch.optim.AdamW(groups, lr=lr)
    if kind is OptimizerKind.SGD:
        return torch.optim.SGD(groups, lr=lr)
    import bitsandbytes as bnb

    if kind is OptimizerKind.PAGED_ADAMW_8BIT:
        return bnb.optim.PagedAdamW8bit(groups, lr=lr)
    return bnb.optim.PagedAdamW32bit(groups, lr=lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    """The configured learning-rate schedule (warm-up included)."""
    from transformers import get_scheduler

    extra = {}
    if cfg.hyper.scheduler is Scheduler.WARMUP_STABLE_DECAY:
        extra = {
            "num_decay_steps": math.ceil(WSD_DECAY_FRACTION * total_steps),
            "min_lr_ratio": WSD_MIN_LR_RATIO,
        }
    return get_scheduler(
        cfg.hyper.scheduler.value,
        optimizer,
        num_warmup_steps=cfg.hyper.warmup_for(total_steps),
        num_training_steps=total_steps,
        scheduler_specific_kwargs=extra,
    )


class TorchEngine:
    """One worker, or DDP over several: PyTorch optimizer, clipping and autocast.

    Args:
        model: The model to train, already on `device`.
        cfg: The job's configuration.
        total_steps: Optimizer steps of the run (for the schedule).
        device: The worker's device.
    """

    def __init__(
        self, model: torch.nn.Module, cfg: TrainConfig, total_steps: int, device: torch.device
    ):
        self.model = model
        self.cfg = cfg
        self.device = device
        self.distributed = world()[1] > 1
        self.module: torch.nn.Module = self._wrap(model, device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, total_steps)
        precision = cfg.hyper.precision
        self._autocast_dtype = (
            None
            if precision is Precision.FP32
            else (torch.bfloat16 if precision is Precision.BF16 else torch.float16)
        )
        self._scaler = torch.amp.GradScaler() if precision is Precision.FP16 else None

    def _wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self.optimizer.param_groups[0]["lr"]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass in the training precision."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager:
        """Context for one micro-batch: DDP all-reduces only on the step's last one."""
        if self.distributed and not last:
            return self.module.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagates one micro-batch's (already normalised) loss."""
        if self._scaler is not None:
            self._scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self) -> float:
        """Clips, steps optimizer and schedule, clears gradients; returns the gradient norm."""
        if self._scaler is not None:
            self._scaler.unscale_(self.optimizer)
        max_norm = self.cfg.hyper.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm if max_norm > 0 else math.inf)
        if hasattr(norm, "full_tensor"):  # sharded (FSDP) gradients give a DTensor norm
            norm = norm.full_tensor()
        if self._scaler is not None:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def save_state(self, folder: Path) -> None:
        """Writes what resuming needs: trainable weights, optimizer and schedule (rank 0)."""
        if world()[0] != 0:
            return
        from forgeline.trainer.modeling import trainable_state

        folder.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "trainable": trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
            folder / STATE_FILE,
        )

    def load_state(self, folder: Path) -> None:
        """Restores what `save_state` wrote (tensors and plain state only).

        Raises:
            UnsafeCheckpoint: the file holds other objects (none was created).
        """
        from forgeline.trainer.modeling import load_trainable_state

        state = load_plain_state(folder / STATE_FILE, map_location=self.device)
        load_trainable_state(self.model, state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def export(self, dest: Path, tokenizer: Any) -> None:
        """Writes the trained adapter or model (rank 0)."""
        from forgeline.trainer.modeling import save_trained

        if world()[0] == 0:
            save_trained(self.model, tokenizer, dest)

    def close(self) -> None:
        """Releases the optimizer state."""
        self.optimizer.zero_grad(set_to_none=True)


class FsdpEngine(TorchEngine):
    """FSDP (PyTorch's `fully_shard`): weights, gradients and optimizer state sharded over
    the workers, one unit per transformer block plus the root (embeddings, head).

    Saving and exporting gather full state dicts, so every worker must call them.
    """

    def _wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (world()[1],))
        blocks = set(_no_split_modules(model))
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager:
        """Context for one micro-batch: gradients are reduced only on the step's last one."""
        self.module.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def _full_state(self, with_optimizer: bool) -> tuple[dict, dict | None]:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        if with_optimizer:
            return get_state_dict(self.model, self.optimizer, options=options)
        return get_model_state_dict(self.model, options=options), None

    def _trainable(self, state: dict) -> dict:
        names = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {n: t for n, t in state.items() if n in names}

    def save_state(self, folder: Path) -> None:
        """Gathers trainable weights and optimizer state (all workers); rank 0 writes them."""
        model_state, optim_state = self._full_state(with_optimizer=True)
        if world()[0] != 0:
            return
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "trainable": self._trainable(model_state),
                "optimizer": optim_state,
                "scheduler": self.scheduler.state_dict(),
            },
            folder / STATE_FILE,
        )

    def load_state(self, folder: Path) -> None:
        """Restores what `save_state` wrote, re-sharding it over the workers.

        Raises:
            UnsafeCheckpoint: the file holds more than tensors and plain state.
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        state = load_plain_state(folder / STATE_FILE, map_location="cpu")
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=state["trainable"],
            optim_state_dict=state["optimizer"],
            options=StateDictOptions(full_state_dict=True, strict=False),
        )
        self.scheduler.load_state_dict(state["scheduler"])

    def export(self, dest: Path, tokenizer: Any) -> None:
        """Gathers the weights (all workers); rank 0 writes the adapter or model."""
        from forgeline.trainer.modeling import save_trained

        state, _ = self._full_state(with_optimizer=False)
        if world()[0] == 0:
            if self.cfg.tuner.adapter:
                state = self._trainable(state)
            save_trained(self.model, tokenizer, dest, state_dict=state)


def _no_split_modules(model: torch.nn.Module) -> list[str]:
    """Class names of the model's transformer blocks (Hugging Face's `_no_split_modules`)."""
    for module in model.modules():
        names = getattr(module, "_no_split_modules", None)
        if names:
            return list(names)
    return []


def build_train_engine(
    model: torch.nn.Module, cfg: TrainConfig, total_steps: int, device: torch.device
) -> TorchEngine | DeepSpeedEngine:
    """Wraps a model for the configuration's strategy: the engine a recipe trains through.

    FSDP on one worker is plain training (there is nothing to shard over).

    Args:
        model: The model to train, already on `device`.
        cfg: The job's configuration (its strategy picks the engine).
        total_steps: Optimizer steps of the run (for the schedule).
        device: The worker's device.
    """
    if cfg.dist.strategy is Strategy.DEEPSPEED:
        from forgeline.trainer.deepspeed_engine import DeepSpeedEngine

        return DeepSpeedEngine(model, cfg, total_steps, device)
    if cfg.dist.strategy is Strategy.FSDP and world()[1] > 1:
        return FsdpEngine(model, cfg, total_steps, device)
    return TorchEngine(model, cfg, total_steps, device)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds Python, NumPy and torch for reproducible initialisation."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    yield
