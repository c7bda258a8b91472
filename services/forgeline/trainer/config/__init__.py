"""A training job's configuration: its choices, defaults, spec checks and resolved form.

`fill_defaults` (in `defaults`) turns a submitted `TrainJobSpec` into the spec as stored.
`check_spec` (in `checks`) finds every problem a spec has on its own, without reading any
file; what its DeepSpeed JSON may hold, and where that JSON's paths go, is
`deepspeed_json`. `TrainConfig.from_pb` (in `train_config`) turns a resolved spec into
plain, picklable dataclasses with enums (from `enums`), which is what the recipes and the
Ray workers receive.
"""

from forgeline.trainer.config.checks import MAX_LORA_RANK, SpecReport, check_spec
from forgeline.trainer.config.defaults import (
    DEFAULT_ADAPTER_LR,
    DEFAULT_DPO_BETA,
    DEFAULT_FULL_LR,
    DEFAULT_LORA_RANK,
    DEFAULT_MAX_SEQ_LENGTH,
    DEFAULT_SEED,
    DEFAULT_ZERO_STAGE,
    fill_defaults,
)
from forgeline.trainer.config.enums import (
    CONVERSATION_FORMATS,
    FORMATS_FOR_TASK,
    PREFERENCE_FORMATS,
    DataFormat,
    DpoLoss,
    OptimizerKind,
    Precision,
    QuantType,
    Scheduler,
    Strategy,
    Task,
    Tuner,
    data_format_of,
    format_to_pb,
    strategy_to_pb,
    task_of,
)
from forgeline.trainer.config.train_config import (
    CheckpointSettings,
    DistSettings,
    DpoSettings,
    HyperSettings,
    LoraSettings,
    QuantSettings,
    TrainConfig,
)

__all__ = [
    "CONVERSATION_FORMATS",
    "DEFAULT_ADAPTER_LR",
    "DEFAULT_DPO_BETA",
    "DEFAULT_FULL_LR",
    "DEFAULT_LORA_RANK",
    "DEFAULT_MAX_SEQ_LENGTH",
    "DEFAULT_SEED",
    "DEFAULT_ZERO_STAGE",
    "FORMATS_FOR_TASK",
    "MAX_LORA_RANK",
    "PREFERENCE_FORMATS",
    "CheckpointSettings",
    "DataFormat",
    "DistSettings",
    "DpoLoss",
    "DpoSettings",
    "HyperSettings",
    "LoraSettings",
    "OptimizerKind",
    "Precision",
    "QuantSettings",
    "QuantType",
    "Scheduler",
    "SpecReport",
    "Strategy",
    "Task",
    "TrainConfig",
    "Tuner",
    "check_spec",
    "data_format_of",
    "fill_defaults",
    "format_to_pb",
    "strategy_to_pb",
    "task_of",
]
