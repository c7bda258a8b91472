"""DeepSpeed ZeRO 0-3 behind the recipes' engine interface (see `distributed`).

The DeepSpeed config of a job is generated from its high-level settings (ZeRO stage,
optimizer and parameter offload, precision, batch sizes, clipping), then any DeepSpeed
JSON the job passes through is merged over it: JSON limited at submission to the settings
of `forgeline.trainer.config.deepspeed_json`, whose paths the runner has placed under the
job's folder. The optimizer and the schedule are the same ones the other engines build,
unless the JSON names its own. DeepSpeed's checkpoint files are read back as plain state
(`PlainStateReader`), never unpickled as arbitrary objects.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import torch

from forgeline.trainer.config import Precision, TrainConfig
from forgeline.trainer.distributed import build_optimizer, build_scheduler, world
from forgeline.trainer.state_files import load_plain_state

DEEPSPEED_TAG = "state"


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config of a job: generated from its settings, then its overrides merged."""
    d, h = cfg.dist, cfg.hyper
    zero: dict[str, Any] = {"stage": d.zero_stage}
    if d.offload_optimizer and d.zero_stage >= 1:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": d.use_gpu}
    if d.offload_params and d.zero_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": d.use_gpu}
    if d.zero_stage == 3:
        # Lets the final save gather full weights from every worker's shard.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": h.batch_size,
        "gradient_accumulation_steps": h.grad_accum,
        "train_batch_size": h.batch_size * h.grad_accum * world_size,
        "gradient_clipping": h.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": h.precision is Precision.BF16},
        "fp16": {"enabled": h.precision is Precision.FP16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        # The optimizer is ours (AdamW or bitsandbytes), also when its state is offloaded;
        # on CPU workers the state lives in the same memory anyway.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
    }
    return _merge(config, d.deepspeed_overrides)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def deepspeed_state_types() -> list[type]:
    """The data types DeepSpeed writes into its checkpoints besides tensors and plain state.

    Each is rebuilt from its fields (an enum from its value) when loaded; none runs code
    named in the file.
    """
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, fragment_address, LossScaler, DynamicLossScaler]


class PlainStateReader:
    """A DeepSpeed checkpoint engine whose `load` accepts plain state only.

    DeepSpeed's own engine loads with `weights_only=False`; every other call goes to it.

    Args:
        engine: The DeepSpeed engine's checkpoint engine.
    """

    def __init__(self, engine: Any):
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def load(self, path: str, map_location: Any = None) -> Any:
        """Loads one checkpoint file.

        Raises:
            UnsafeCheckpoint: the file holds objects other than plain state and
                `deepspeed_state_types`.
        """
        return load_plain_state(path, map_location, allowed_types=deepspeed_state_types())


class DeepSpeedEngine:
    """DeepSpeed ZeRO 0-3 with optional optimizer / parameter offload.

    The recipe calls `backward` and `step` once per micro-batch, as DeepSpeed expects;
    DeepSpeed counts micro-batches and steps the optimizer at accumulation boundaries.
    """

    def __init__(
        self, model: torch.nn.Module, cfg: TrainConfig, total_steps: int, device: torch.device
    ):
        import deepspeed

        self.cfg = cfg
        self.device = device
        self.model = model
        self.stage = cfg.dist.zero_stage
        config = deepspeed_config(cfg, world()[1])
        client_optimizer = None if "optimizer" in config else build_optimizer(model, cfg)
        scheduler = None
        if "scheduler" not in config:

            def scheduler(optimizer):
                return build_scheduler(optimizer, cfg, total_steps)

        self.module, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=client_optimizer,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            lr_scheduler=scheduler,
            config=config,
            dist_init_required=False,
        )
        self._grad_norm = 0.0

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self.module.get_lr()[0]

    def autocast(self) -> contextlib.AbstractContextManager:
        """DeepSpeed casts the model itself; nothing to do."""
        return contextlib.nullcontext()

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager:
        """DeepSpeed tracks accumulation boundaries itself."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagates and advances DeepSpeed's micro-step (optimizer at boundaries)."""
        self.module.backward(loss, scale_wrt_gas=False)
        boundary = self.module.is_gradient_accumulation_boundary()
        self.module.step()
        if boundary:
            norm = self.module.get_global_grad_norm()
            self._grad_norm = float(norm) if norm is not None else 0.0

    def step(self) -> float:
        """The optimizer already stepped in `backward`; returns the last gradient norm."""
        return self._grad_norm

    def save_state(self, folder: Path) -> None:
        """Every worker writes its shard of the trainable state (frozen weights excluded)."""
        self.module.save_checkpoint(str(folder), tag=DEEPSPEED_TAG, exclude_frozen_parameters=True)

    def load_state(self, folder: Path) -> None:
        """Restores every worker's shard, reading its files as plain state.

        Raises:
            RuntimeError: the checkpoint could not be loaded.
            UnsafeCheckpoint: a file holds more than plain state (nothing was run).
        """
        own = self.module.checkpoint_engine
        self.module.checkpoint_engine = PlainStateReader(own)
        try:
            path, _ = self.module.load_checkpoint(
                str(folder), tag=DEEPSPEED_TAG, load_module_strict=False
            )
        finally:
            self.module.checkpoint_engine = own
        if path is None:
            raise RuntimeError(f"no DeepSpeed checkpoint under {folder}")

    def export(self, dest: Path, tokenizer: Any) -> None:
        """Writes the trained adapter or model, gathering ZeRO-3 shards first (all workers)."""
        from forgeline.trainer.modeling import save_trained

        rank = world()[0]
        model = self.module.module
        if self.stage < 3:
            if rank == 0:
                save_trained(model, tokenizer, dest)
            return
        if self.cfg.tuner.adapter:
            import deepspeed

            trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            with deepspeed.zero.GatheredParameters([p for _, p in trainable], modifier_rank=None):
                state = {n: p.detach().cpu().clone() for n, p in trainable}
        else:
            state = self.module._zero3_consolidated_16bit_state_dict()
        if rank == 0:
            save_trained(model, tokenizer, dest, state_dict=state)

    def close(self) -> None:
        """Frees DeepSpeed's buffers."""
        with contextlib.suppress(Exception):
            self.module.destroy()
