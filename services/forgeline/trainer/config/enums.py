"""The choices of a training job as enums, and their tables to and from protobuf values.

Every protobuf enum of the trainer contract has a domain `StrEnum` here and one table
mapping its protobuf values to the domain members (`*_FROM_PB`); the few conversions back
to protobuf go through `format_to_pb` and `strategy_to_pb`.
"""

from __future__ import annotations

import enum

from forgeline.v1 import trainer_pb2


class Task(enum.StrEnum):
    """What a job trains for."""

    SFT = "sft"
    PRETRAIN = "pretrain"
    DPO = "dpo"


class Tuner(enum.StrEnum):
    """Which parameters are trained."""

    LORA = "lora"
    QLORA = "qlora"
    DORA = "dora"
    FULL = "full"

    @property
    def adapter(self) -> bool:
        """Whether the result is a PEFT adapter over a frozen base."""
        return self is not Tuner.FULL


class Strategy(enum.StrEnum):
    """How work is spread over workers (AUTO is resolved by the plan before running)."""

    AUTO = "auto"
    NONE = "none"
    DDP = "ddp"
    FSDP = "fsdp"
    DEEPSPEED = "deepspeed"


class Precision(enum.StrEnum):
    """Numeric precision of trainable weights and compute."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Scheduler(enum.StrEnum):
    """Learning-rate schedule, named as in `transformers.get_scheduler`."""

    LINEAR = "linear"
    COSINE = "cosine"
    COSINE_WITH_RESTARTS = "cosine_with_restarts"
    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    WARMUP_STABLE_DECAY = "warmup_stable_decay"


class OptimizerKind(enum.StrEnum):
    """Optimizer implementation."""

    ADAMW = "adamw"
    PAGED_ADAMW_8BIT = "paged_adamw_8bit"
    PAGED_ADAMW_32BIT = "paged_adamw_32bit"
    SGD = "sgd"


class DpoLoss(enum.StrEnum):
    """DPO loss, named as TRL's `loss_type`."""

    SIGMOID = "sigmoid"
    HINGE = "hinge"
    IPO = "ipo"
    ROBUST = "robust"


class QuantType(enum.StrEnum):
    """bitsandbytes storage type of the frozen base weights (QLoRA)."""

    NF4 = "nf4"
    FP4 = "fp4"
    INT8 = "int8"


class DataFormat(enum.StrEnum):
    """Layout of dataset records (AUTO is resolved by inspecting the file)."""

    AUTO = "auto"
    MESSAGES = "messages"
    ALPACA = "alpaca"
    SHAREGPT = "sharegpt"
    QUERY_RESPONSE = "query_response"
    TEXT = "text"
    PREFERENCE = "preference"
    SHAREGPT_PREFERENCE = "sharegpt_preference"


CONVERSATION_FORMATS = frozenset(
    {DataFormat.MESSAGES, DataFormat.ALPACA, DataFormat.SHAREGPT, DataFormat.QUERY_RESPONSE}
)
PREFERENCE_FORMATS = frozenset({DataFormat.PREFERENCE, DataFormat.SHAREGPT_PREFERENCE})
FORMATS_FOR_TASK: dict[Task, frozenset[DataFormat]] = {
    Task.SFT: CONVERSATION_FORMATS,
    Task.PRETRAIN: frozenset({DataFormat.TEXT}),
    Task.DPO: PREFERENCE_FORMATS,
}

# Protobuf enum value -> domain enum, one table per enum.
TASK_FROM_PB: dict[int, Task] = {
    trainer_pb2.TRAIN_TASK_SFT: Task.SFT,
    trainer_pb2.TRAIN_TASK_PRETRAIN: Task.PRETRAIN,
    trainer_pb2.TRAIN_TASK_DPO: Task.DPO,
}
TUNER_FROM_PB: dict[int, Tuner] = {
    trainer_pb2.TUNER_LORA: Tuner.LORA,
    trainer_pb2.TUNER_QLORA: Tuner.QLORA,
    trainer_pb2.TUNER_DORA: Tuner.DORA,
    trainer_pb2.TUNER_FULL: Tuner.FULL,
}
STRATEGY_FROM_PB: dict[int, Strategy] = {
    trainer_pb2.DISTRIBUTION_STRATEGY_AUTO: Strategy.AUTO,
    trainer_pb2.DISTRIBUTION_STRATEGY_NONE: Strategy.NONE,
    trainer_pb2.DISTRIBUTION_STRATEGY_DDP: Strategy.DDP,
    trainer_pb2.DISTRIBUTION_STRATEGY_FSDP: Strategy.FSDP,
    trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED: Strategy.DEEPSPEED,
}
PRECISION_FROM_PB: dict[int, Precision] = {
    trainer_pb2.PRECISION_FP32: Precision.FP32,
    trainer_pb2.PRECISION_BF16: Precision.BF16,
    trainer_pb2.PRECISION_FP16: Precision.FP16,
}
SCHEDULER_FROM_PB: dict[int, Scheduler] = {
    trainer_pb2.LR_SCHEDULER_LINEAR: Scheduler.LINEAR,
    trainer_pb2.LR_SCHEDULER_COSINE: Scheduler.COSINE,
    trainer_pb2.LR_SCHEDULER_COSINE_WITH_RESTARTS: Scheduler.COSINE_WITH_RESTARTS,
    trainer_pb2.LR_SCHEDULER_POLYNOMIAL: Scheduler.POLYNOMIAL,
    trainer_pb2.LR_SCHEDULER_CONSTANT: Scheduler.CONSTANT,
    trainer_pb2.LR_SCHEDULER_CONSTANT_WITH_WARMUP: Scheduler.CONSTANT_WITH_WARMUP,
    trainer_pb2.LR_SCHEDULER_WARMUP_STABLE_DECAY: Scheduler.WARMUP_STABLE_DECAY,
}
OPTIMIZER_FROM_PB: dict[int, OptimizerKind] = {
    trainer_pb2.OPTIMIZER_ADAMW: OptimizerKind.ADAMW,
    trainer_pb2.OPTIMIZER_PAGED_ADAMW_8BIT: OptimizerKind.PAGED_ADAMW_8BIT,
    trainer_pb2.OPTIMIZER_PAGED_ADAMW_32BIT: OptimizerKind.PAGED_ADAMW_32BIT,
    trainer_pb2.OPTIMIZER_SGD: OptimizerKind.SGD,
}
DPO_LOSS_FROM_PB: dict[int, DpoLoss] = {
    trainer_pb2.DPO_LOSS_TYPE_SIGMOID: DpoLoss.SIGMOID,
    trainer_pb2.DPO_LOSS_TYPE_HINGE: DpoLoss.HINGE,
    trainer_pb2.DPO_LOSS_TYPE_IPO: DpoLoss.IPO,
    trainer_pb2.DPO_LOSS_TYPE_ROBUST: DpoLoss.ROBUST,
}
QUANT_TYPE_FROM_PB: dict[int, QuantType] = {
    trainer_pb2.QUANT_TYPE_NF4: QuantType.NF4,
    trainer_pb2.QUANT_TYPE_FP4: QuantType.FP4,
    trainer_pb2.QUANT_TYPE_INT8: QuantType.INT8,
}
FORMAT_FROM_PB: dict[int, DataFormat] = {
    trainer_pb2.DATASET_FORMAT_AUTO: DataFormat.AUTO,
    trainer_pb2.DATASET_FORMAT_MESSAGES: DataFormat.MESSAGES,
    trainer_pb2.DATASET_FORMAT_ALPACA: DataFormat.ALPACA,
    trainer_pb2.DATASET_FORMAT_SHAREGPT: DataFormat.SHAREGPT,
    trainer_pb2.DATASET_FORMAT_QUERY_RESPONSE: DataFormat.QUERY_RESPONSE,
    trainer_pb2.DATASET_FORMAT_TEXT: DataFormat.TEXT,
    trainer_pb2.DATASET_FORMAT_PREFERENCE: DataFormat.PREFERENCE,
    trainer_pb2.DATASET_FORMAT_SHAREGPT_PREFERENCE: DataFormat.SHAREGPT_PREFERENCE,
}


def _inverse(table: dict[int, enum.StrEnum]) -> dict[enum.StrEnum, int]:
    return {v: k for k, v in table.items()}


def format_to_pb(fmt: DataFormat) -> int:
    """The `DatasetFormat` protobuf value of a domain format."""
    return _inverse(FORMAT_FROM_PB)[fmt]


def strategy_to_pb(strategy: Strategy) -> int:
    """The `DistributionStrategy` protobuf value of a domain strategy."""
    return _inverse(STRATEGY_FROM_PB)[strategy]


def data_format_of(spec: trainer_pb2.TrainJobSpec) -> DataFormat:
    """The dataset format a spec asks for (AUTO when unset)."""
    return FORMAT_FROM_PB.get(spec.dataset_format, DataFormat.AUTO)


def task_of(spec: trainer_pb2.TrainJobSpec) -> Task | None:
    """The task of a spec, or None when unset."""
    return TASK_FROM_PB.get(spec.task)
