from forgeline.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainTask(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAIN_TASK_UNSPECIFIED: _ClassVar[TrainTask]
    TRAIN_TASK_SFT: _ClassVar[TrainTask]
    TRAIN_TASK_PRETRAIN: _ClassVar[TrainTask]
    TRAIN_TASK_DPO: _ClassVar[TrainTask]

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_AUTO: _ClassVar[DatasetFormat]
    DATASET_FORMAT_MESSAGES: _ClassVar[DatasetFormat]
    DATASET_FORMAT_ALPACA: _ClassVar[DatasetFormat]
    DATASET_FORMAT_SHAREGPT: _ClassVar[DatasetFormat]
    DATASET_FORMAT_QUERY_RESPONSE: _ClassVar[DatasetFormat]
    DATASET_FORMAT_TEXT: _ClassVar[DatasetFormat]
    DATASET_FORMAT_PREFERENCE: _ClassVar[DatasetFormat]
    DATASET_FORMAT_SHAREGPT_PREFERENCE: _ClassVar[DatasetFormat]

class Tuner(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TUNER_UNSPECIFIED: _ClassVar[Tuner]
    TUNER_LORA: _ClassVar[Tuner]
    TUNER_QLORA: _ClassVar[Tuner]
    TUNER_DORA: _ClassVar[Tuner]
    TUNER_FULL: _ClassVar[Tuner]

class QuantType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANT_TYPE_UNSPECIFIED: _ClassVar[QuantType]
    QUANT_TYPE_NF4: _ClassVar[QuantType]
    QUANT_TYPE_FP4: _ClassVar[QuantType]
    QUANT_TYPE_INT8: _ClassVar[QuantType]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_BF16: _ClassVar[Precision]
    PRECISION_FP16: _ClassVar[Precision]

class LrScheduler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LR_SCHEDULER_UNSPECIFIED: _ClassVar[LrScheduler]
    LR_SCHEDULER_LINEAR: _ClassVar[LrScheduler]
    LR_SCHEDULER_COSINE: _ClassVar[LrScheduler]
    LR_SCHEDULER_COSINE_WITH_RESTARTS: _ClassVar[LrScheduler]
    LR_SCHEDULER_POLYNOMIAL: _ClassVar[LrScheduler]
    LR_SCHEDULER_CONSTANT: _ClassVar[LrScheduler]
    LR_SCHEDULER_CONSTANT_WITH_WARMUP: _ClassVar[LrScheduler]
    LR_SCHEDULER_WARMUP_STABLE_DECAY: _ClassVar[LrScheduler]

class Optimizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIMIZER_UNSPECIFIED: _ClassVar[Optimizer]
    OPTIMIZER_ADAMW: _ClassVar[Optimizer]
    OPTIMIZER_PAGED_ADAMW_8BIT: _ClassVar[Optimizer]
    OPTIMIZER_PAGED_ADAMW_32BIT: _ClassVar[Optimizer]
    OPTIMIZER_SGD: _ClassVar[Optimizer]

class DpoLossType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DPO_LOSS_TYPE_UNSPECIFIED: _ClassVar[DpoLossType]
    DPO_LOSS_TYPE_SIGMOID: _ClassVar[DpoLossType]
    DPO_LOSS_TYPE_HINGE: _ClassVar[DpoLossType]
    DPO_LOSS_TYPE_IPO: _ClassVar[DpoLossType]
    DPO_LOSS_TYPE_ROBUST: _ClassVar[DpoLossType]

class DistributionStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISTRIBUTION_STRATEGY_UNSPECIFIED: _ClassVar[DistributionStrategy]
    DISTRIBUTION_STRATEGY_AUTO: _ClassVar[DistributionStrategy]
    DISTRIBUTION_STRATEGY_NONE: _ClassVar[DistributionStrategy]
    DISTRIBUTION_STRATEGY_DDP: _ClassVar[DistributionStrategy]
    DISTRIBUTION_STRATEGY_FSDP: _ClassVar[DistributionStrategy]
    DISTRIBUTION_STRATEGY_DEEPSPEED: _ClassVar[DistributionStrategy]
TRAIN_TASK_UNSPECIFIED: TrainTask
TRAIN_TASK_SFT: TrainTask
TRAIN_TASK_PRETRAIN: TrainTask
TRAIN_TASK_DPO: TrainTask
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_AUTO: DatasetFormat
DATASET_FORMAT_MESSAGES: DatasetFormat
DATASET_FORMAT_ALPACA: DatasetFormat
DATASET_FORMAT_SHAREGPT: DatasetFormat
DATASET_FORMAT_QUERY_RESPONSE: DatasetFormat
DATASET_FORMAT_TEXT: DatasetFormat
DATASET_FORMAT_PREFERENCE: DatasetFormat
DATASET_FORMAT_SHAREGPT_PREFERENCE: DatasetFormat
TUNER_UNSPECIFIED: Tuner
TUNER_LORA: Tuner
TUNER_QLORA: Tuner
TUNER_DORA: Tuner
TUNER_FULL: Tuner
QUANT_TYPE_UNSPECIFIED: QuantType
QUANT_TYPE_NF4: QuantType
QUANT_TYPE_FP4: QuantType
QUANT_TYPE_INT8: QuantType
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_BF16: Precision
PRECISION_FP16: Precision
LR_SCHEDULER_UNSPECIFIED: LrScheduler
LR_SCHEDULER_LINEAR: LrScheduler
LR_SCHEDULER_COSINE: LrScheduler
LR_SCHEDULER_COSINE_WITH_RESTARTS: LrScheduler
LR_SCHEDULER_POLYNOMIAL: LrScheduler
LR_SCHEDULER_CONSTANT: LrScheduler
LR_SCHEDULER_CONSTANT_WITH_WARMUP: LrScheduler
LR_SCHEDULER_WARMUP_STABLE_DECAY: LrScheduler
OPTIMIZER_UNSPECIFIED: Optimizer
OPTIMIZER_ADAMW: Optimizer
OPTIMIZER_PAGED_ADAMW_8BIT: Optimizer
OPTIMIZER_PAGED_ADAMW_32BIT: Optimizer
OPTIMIZER_SGD: Optimizer
DPO_LOSS_TYPE_UNSPECIFIED: DpoLossType
DPO_LOSS_TYPE_SIGMOID: DpoLossType
DPO_LOSS_TYPE_HINGE: DpoLossType
DPO_LOSS_TYPE_IPO: DpoLossType
DPO_LOSS_TYPE_ROBUST: DpoLossType
DISTRIBUTION_STRATEGY_UNSPECIFIED: DistributionStrategy
DISTRIBUTION_STRATEGY_AUTO: DistributionStrategy
DISTRIBUTION_STRATEGY_NONE: DistributionStrategy
DISTRIBUTION_STRATEGY_DDP: DistributionStrategy
DISTRIBUTION_STRATEGY_FSDP: DistributionStrategy
DISTRIBUTION_STRATEGY_DEEPSPEED: DistributionStrategy

class TrainJobSpec(_message.Message):
    __slots__ = ("task", "base_model", "dataset", "dataset_format", "eval_dataset", "output_name", "tuner", "lora", "quantization", "hyper_parameters", "dpo", "distribution", "checkpointing", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DATASET_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EVAL_DATASET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    TUNER_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    HYPER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DPO_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    task: TrainTask
    base_model: _common_pb2.ModelRef
    dataset: _common_pb2.ModelRef
    dataset_format: DatasetFormat
    eval_dataset: _common_pb2.ModelRef
    output_name: str
    tuner: Tuner
    lora: LoraConfig
    quantization: QuantizationConfig
    hyper_parameters: HyperParameters
    dpo: DpoConfig
    distribution: DistributionConfig
    checkpointing: CheckpointConfig
    labels: _containers.ScalarMap[str, str]
    def __init__(self, task: _Optional[_Union[TrainTask, str]] = ..., base_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., dataset_format: _Optional[_Union[DatasetFormat, str]] = ..., eval_dataset: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., output_name: _Optional[str] = ..., tuner: _Optional[_Union[Tuner, str]] = ..., lora: _Optional[_Union[LoraConfig, _Mapping]] = ..., quantization: _Optional[_Union[QuantizationConfig, _Mapping]] = ..., hyper_parameters: _Optional[_Union[HyperParameters, _Mapping]] = ..., dpo: _Optional[_Union[DpoConfig, _Mapping]] = ..., distribution: _Optional[_Union[DistributionConfig, _Mapping]] = ..., checkpointing: _Optional[_Union[CheckpointConfig, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LoraConfig(_message.Message):
    __slots__ = ("rank", "alpha", "dropout", "target_modules", "modules_to_save")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    MODULES_TO_SAVE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    alpha: int
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    modules_to_save: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rank: _Optional[int] = ..., alpha: _Optional[int] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ..., modules_to_save: _Optional[_Iterable[str]] = ...) -> None: ...

class QuantizationConfig(_message.Message):
    __slots__ = ("bits", "quant_type", "double_quant", "compute_dtype")
    BITS_FIELD_NUMBER: _ClassVar[int]
    QUANT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_QUANT_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    bits: int
    quant_type: QuantType
    double_quant: bool
    compute_dtype: Precision
    def __init__(self, bits: _Optional[int] = ..., quant_type: _Optional[_Union[QuantType, str]] = ..., double_quant: _Optional[bool] = ..., compute_dtype: _Optional[_Union[Precision, str]] = ...) -> None: ...

class HyperParameters(_message.Message):
    __slots__ = ("epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_ratio", "warmup_steps", "weight_decay", "per_device_batch_size", "gradient_accumulation_steps", "max_seq_length", "packing", "seed", "precision", "gradient_checkpointing", "optimizer", "max_grad_norm")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RATIO_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    PER_DEVICE_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    max_steps: int
    learning_rate: float
    lr_scheduler: LrScheduler
    warmup_ratio: float
    warmup_steps: int
    weight_decay: float
    per_device_batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    packing: bool
    seed: int
    precision: Precision
    gradient_checkpointing: bool
    optimizer: Optimizer
    max_grad_norm: float
    def __init__(self, epochs: _Optional[int] = ..., max_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., lr_scheduler: _Optional[_Union[LrScheduler, str]] = ..., warmup_ratio: _Optional[float] = ..., warmup_steps: _Optional[int] = ..., weight_decay: _Optional[float] = ..., per_device_batch_size: _Optional[int] = ..., gradient_accumulation_steps: _Optional[int] = ..., max_seq_length: _Optional[int] = ..., packing: _Optional[bool] = ..., seed: _Optional[int] = ..., precision: _Optional[_Union[Precision, str]] = ..., gradient_checkpointing: _Optional[bool] = ..., optimizer: _Optional[_Union[Optimizer, str]] = ..., max_grad_norm: _Optional[float] = ...) -> None: ...

class DpoConfig(_message.Message):
    __slots__ = ("beta", "loss_type", "reference_model", "label_smoothing")
    BETA_FIELD_NUMBER: _ClassVar[int]
    LOSS_TYPE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MODEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    beta: float
    loss_type: DpoLossType
    reference_model: _common_pb2.ModelRef
    label_smoothing: float
    def __init__(self, beta: _Optional[float] = ..., loss_type: _Optional[_Union[DpoLossType, str]] = ..., reference_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., label_smoothing: _Optional[float] = ...) -> None: ...

class DistributionConfig(_message.Message):
    __slots__ = ("strategy", "zero_stage", "offload_optimizer", "offload_params", "deepspeed_config_json", "resources")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ZERO_STAGE_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_PARAMS_FIELD_NUMBER: _ClassVar[int]
    DEEPSPEED_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    strategy: DistributionStrategy
    zero_stage: int
    offload_optimizer: bool
    offload_params: bool
    deepspeed_config_json: str
    resources: _common_pb2.ResourceRequest
    def __init__(self, strategy: _Optional[_Union[DistributionStrategy, str]] = ..., zero_stage: _Optional[int] = ..., offload_optimizer: _Optional[bool] = ..., offload_params: _Optional[bool] = ..., deepspeed_config_json: _Optional[str] = ..., resources: _Optional[_Union[_common_pb2.ResourceRequest, _Mapping]] = ...) -> None: ...

class CheckpointConfig(_message.Message):
    __slots__ = ("save_every_steps", "keep_last", "resume_enabled")
    SAVE_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    RESUME_ENABLED_FIELD_NUMBER: _ClassVar[int]
    save_every_steps: int
    keep_last: int
    resume_enabled: bool
    def __init__(self, save_every_steps: _Optional[int] = ..., keep_last: _Optional[int] = ..., resume_enabled: _Optional[bool] = ...) -> None: ...

class SubmitTrainJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: TrainJobSpec
    def __init__(self, spec: _Optional[_Union[TrainJobSpec, _Mapping]] = ...) -> None: ...

class SubmitTrainJobResponse(_message.Message):
    __slots__ = ("job", "spec")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    spec: TrainJobSpec
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., spec: _Optional[_Union[TrainJobSpec, _Mapping]] = ...) -> None: ...

class GetTrainJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetTrainJobResponse(_message.Message):
    __slots__ = ("job", "spec")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    spec: TrainJobSpec
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., spec: _Optional[_Union[TrainJobSpec, _Mapping]] = ...) -> None: ...

class ListTrainJobsRequest(_message.Message):
    __slots__ = ("page", "filter")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    filter: _common_pb2.JobFilter
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., filter: _Optional[_Union[_common_pb2.JobFilter, _Mapping]] = ...) -> None: ...

class ListTrainJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_common_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTrainJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTrainJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class WatchTrainJobRequest(_message.Message):
    __slots__ = ("job_id", "after_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class WatchTrainJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _common_pb2.JobEvent
    def __init__(self, event: _Optional[_Union[_common_pb2.JobEvent, _Mapping]] = ...) -> None: ...

class PlanTrainJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: TrainJobSpec
    def __init__(self, spec: _Optional[_Union[TrainJobSpec, _Mapping]] = ...) -> None: ...

class PlanTrainJobResponse(_message.Message):
    __slots__ = ("strategy", "zero_stage", "memory_per_worker", "total_tokens", "num_examples", "total_steps", "resolved_spec", "warnings", "problems")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ZERO_STAGE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_SPEC_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    strategy: DistributionStrategy
    zero_stage: int
    memory_per_worker: MemoryEstimate
    total_tokens: int
    num_examples: int
    total_steps: int
    resolved_spec: TrainJobSpec
    warnings: _containers.RepeatedScalarFieldContainer[str]
    problems: _containers.RepeatedCompositeFieldContainer[PlanProblem]
    def __init__(self, strategy: _Optional[_Union[DistributionStrategy, str]] = ..., zero_stage: _Optional[int] = ..., memory_per_worker: _Optional[_Union[MemoryEstimate, _Mapping]] = ..., total_tokens: _Optional[int] = ..., num_examples: _Optional[int] = ..., total_steps: _Optional[int] = ..., resolved_spec: _Optional[_Union[TrainJobSpec, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., problems: _Optional[_Iterable[_Union[PlanProblem, _Mapping]]] = ...) -> None: ...

class MemoryEstimate(_message.Message):
    __slots__ = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "total_bytes", "allocator_bytes")
    WEIGHTS_BYTES_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATOR_BYTES_FIELD_NUMBER: _ClassVar[int]
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    total_bytes: int
    allocator_bytes: int
    def __init__(self, weights_bytes: _Optional[int] = ..., gradients_bytes: _Optional[int] = ..., optimizer_bytes: _Optional[int] = ..., activations_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., allocator_bytes: _Optional[int] = ...) -> None: ...

class PlanProblem(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
