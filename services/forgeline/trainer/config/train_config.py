"""The resolved configuration recipes read: `TrainConfig` and its parts, from a spec.

`TrainConfig.from_pb` turns a resolved spec (one that went through `fill_defaults`) into
plain, picklable dataclasses with enums, which is what the recipes and the Ray workers
receive.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from forgeline.client.refs import format_ref
from forgeline.trainer.config.defaults import (
    DEFAULT_ADAPTER_LR,
    DEFAULT_DPO_BETA,
    DEFAULT_LORA_RANK,
    DEFAULT_MAX_SEQ_LENGTH,
    DEFAULT_SEED,
    DEFAULT_ZERO_STAGE,
)
from forgeline.trainer.config.enums import (
    DPO_LOSS_FROM_PB,
    FORMAT_FROM_PB,
    OPTIMIZER_FROM_PB,
    PRECISION_FROM_PB,
    QUANT_TYPE_FROM_PB,
    SCHEDULER_FROM_PB,
    STRATEGY_FROM_PB,
    TASK_FROM_PB,
    TUNER_FROM_PB,
    DataFormat,
    DpoLoss,
    OptimizerKind,
    Precision,
    QuantType,
    Scheduler,
    Strategy,
    Task,
    Tuner,
)
from forgeline.v1 import trainer_pb2


@dataclass(frozen=True)
class LoraSettings:
    """Adapter settings (PEFT `LoraConfig`); `target_modules` may be `("all-linear",)`."""

    rank: int = DEFAULT_LORA_RANK
    alpha: int = 2 * DEFAULT_LORA_RANK
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ()
    modules_to_save: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuantSettings:
    """bitsandbytes quantization of the frozen base (QLoRA)."""

    bits: int = 4
    quant_type: QuantType = QuantType.NF4
    double_quant: bool = False
    compute_dtype: Precision = Precision.FP32


@dataclass(frozen=True)
class HyperSettings:
    """Optimization hyper-parameters with every default applied."""

    epochs: int = 1
    max_steps: int = 0
    learning_rate: float = DEFAULT_ADAPTER_LR
    scheduler: Scheduler = Scheduler.LINEAR
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    batch_size: int = 1
    grad_accum: int = 1
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    packing: bool = False
    seed: int = DEFAULT_SEED
    precision: Precision = Precision.FP32
    gradient_checkpointing: bool = False
    optimizer: OptimizerKind = OptimizerKind.ADAMW
    max_grad_norm: float = 1.0

    def warmup_for(self, total_steps: int) -> int:
        """Warm-up steps for a run of `total_steps` optimizer steps."""
        if self.warmup_steps:
            return self.warmup_steps
        return math.ceil(self.warmup_ratio * total_steps)


@dataclass(frozen=True)
class DpoSettings:
    """Preference-optimization settings."""

    beta: float = DEFAULT_DPO_BETA
    loss: DpoLoss = DpoLoss.SIGMOID
    reference: str = ""  # a registry reference; empty means the base (adapter disabled)
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class DistSettings:
    """Workers, strategy and per-worker resources."""

    strategy: Strategy = Strategy.NONE
    zero_stage: int = DEFAULT_ZERO_STAGE
    offload_optimizer: bool = False
    offload_params: bool = False
    deepspeed_overrides: dict = field(default_factory=dict)
    num_workers: int = 1
    cpus_per_worker: float = 0.0
    gpus_per_worker: float = 0.0
    memory_bytes_per_worker: int = 0
    accelerator_type: str = ""

    @property
    def use_gpu(self) -> bool:
        """Whether workers train on GPUs."""
        return self.gpus_per_worker > 0


@dataclass(frozen=True)
class CheckpointSettings:
    """When checkpoints are written and kept."""

    save_every_steps: int = 0
    keep_last: int = 0
    resume_enabled: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Everything a recipe needs, resolved, in plain types (safe to send to Ray workers)."""

    task: Task
    tuner: Tuner = Tuner.LORA
    data_format: DataFormat = DataFormat.AUTO
    base_model: str = ""
    dataset: str = ""
    eval_dataset: str = ""
    output_name: str = ""
    lora: LoraSettings = LoraSettings()
    quant: QuantSettings | None = None
    hyper: HyperSettings = HyperSettings()
    dpo: DpoSettings = DpoSettings()
    dist: DistSettings = DistSettings()
    checkpoints: CheckpointSettings = CheckpointSettings()

    @classmethod
    def from_pb(cls, spec: trainer_pb2.TrainJobSpec) -> TrainConfig:
        """Builds the configuration of a spec that went through `fill_defaults`."""
        h, d, lora, q = spec.hyper_parameters, spec.distribution, spec.lora, spec.quantization
        tuner = TUNER_FROM_PB[spec.tuner]
        precision = PRECISION_FROM_PB[h.precision]
        quant = None
        if tuner is Tuner.QLORA:
            quant = QuantSettings(
                bits=q.bits,
                quant_type=QUANT_TYPE_FROM_PB[q.quant_type],
                double_quant=q.double_quant,
                compute_dtype=PRECISION_FROM_PB.get(q.compute_dtype, precision),
            )
        return cls(
            task=TASK_FROM_PB[spec.task],
            tuner=tuner,
            data_format=FORMAT_FROM_PB.get(spec.dataset_format, DataFormat.AUTO),
            base_model=format_ref(spec.base_model),
            dataset=format_ref(spec.dataset),
            eval_dataset=format_ref(spec.eval_dataset) if spec.eval_dataset.name else "",
            output_name=spec.output_name,
            lora=LoraSettings(
                rank=lora.rank,
                alpha=lora.alpha,
                dropout=lora.dropout,
                target_modules=tuple(lora.target_modules),
                modules_to_save=tuple(lora.modules_to_save),
            ),
            quant=quant,
            hyper=HyperSettings(
                epochs=h.epochs,
                max_steps=h.max_steps,
                learning_rate=h.learning_rate,
                scheduler=SCHEDULER_FROM_PB[h.lr_scheduler],
                warmup_ratio=h.warmup_ratio,
                warmup_steps=h.warmup_steps,
                weight_decay=h.weight_decay,
                batch_size=h.per_device_batch_size,
                grad_accum=h.gradient_accumulation_steps,
                max_seq_length=h.max_seq_length,
                packing=h.packing and TASK_FROM_PB[spec.task] is not Task.DPO,
                seed=h.seed,
                precision=precision,
                gradient_checkpointing=h.gradient_checkpointing,
                optimizer=OPTIMIZER_FROM_PB[h.optimizer],
                max_grad_norm=h.max_grad_norm,
            ),
            dpo=DpoSettings(
                beta=spec.dpo.beta or DEFAULT_DPO_BETA,
                loss=DPO_LOSS_FROM_PB.get(spec.dpo.loss_type, DpoLoss.SIGMOID),
                reference=format_ref(spec.dpo.reference_model)
                if spec.dpo.reference_model.name
                else "",
                label_smoothing=spec.dpo.label_smoothing,
            ),
            dist=DistSettings(
                strategy=STRATEGY_FROM_PB.get(d.strategy, Strategy.AUTO),
                zero_stage=d.zero_stage if d.HasField("zero_stage") else DEFAULT_ZERO_STAGE,
                offload_optimizer=d.offload_optimizer,
                offload_params=d.offload_params,
                deepspeed_overrides=json.loads(d.deepspeed_config_json)
                if d.deepspeed_config_json
                else {},
                num_workers=d.resources.num_workers or 1,
                cpus_per_worker=d.resources.cpus_per_worker,
                gpus_per_worker=d.resources.gpus_per_worker,
                memory_bytes_per_worker=d.resources.memory_bytes_per_worker,
                accelerator_type=d.resources.accelerator_type,
            ),
            checkpoints=CheckpointSettings(
                save_every_steps=spec.checkpointing.save_every_steps,
                keep_last=spec.checkpointing.keep_last,
                resume_enabled=spec.checkpointing.resume_enabled
                if spec.checkpointing.HasField("resume_enabled")
                else True,
            ),
        )
