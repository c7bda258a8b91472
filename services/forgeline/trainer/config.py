"""A training job's configuration: defaults, spec checks, and the resolved form recipes read.

`fill_defaults` turns a submitted `TrainJobSpec` into the spec as stored (every zero that
means "default" replaced by its value). `check_spec` finds every problem a spec has on its
own, without reading any file. `TrainConfig.from_pb` turns a resolved spec into plain,
picklable dataclasses with enums, which is what the recipes and the Ray workers receive.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field

from forgeline.client.exceptions import FieldViolation
from forgeline.client.refs import RefError, check_name, format_ref
from forgeline.v1 import common_pb2, trainer_pb2

DEFAULT_LORA_RANK = 8
DEFAULT_ADAPTER_LR = 2e-4
DEFAULT_FULL_LR = 2e-5
DEFAULT_SEED = 42
DEFAULT_MAX_SEQ_LENGTH = 2048
DEFAULT_DPO_BETA = 0.1
DEFAULT_ZERO_STAGE = 2
MAX_LORA_RANK = 4096


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

# Protobuf enum value <-> domain enum, one table per enum.
_TASKS = {
    trainer_pb2.TRAIN_TASK_SFT: Task.SFT,
    trainer_pb2.TRAIN_TASK_PRETRAIN: Task.PRETRAIN,
    trainer_pb2.TRAIN_TASK_DPO: Task.DPO,
}
_TUNERS = {
    trainer_pb2.TUNER_LORA: Tuner.LORA,
    trainer_pb2.TUNER_QLORA: Tuner.QLORA,
    trainer_pb2.TUNER_DORA: Tuner.DORA,
    trainer_pb2.TUNER_FULL: Tuner.FULL,
}
_STRATEGIES = {
    trainer_pb2.DISTRIBUTION_STRATEGY_AUTO: Strategy.AUTO,
    trainer_pb2.DISTRIBUTION_STRATEGY_NONE: Strategy.NONE,
    trainer_pb2.DISTRIBUTION_STRATEGY_DDP: Strategy.DDP,
    trainer_pb2.DISTRIBUTION_STRATEGY_FSDP: Strategy.FSDP,
    trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED: Strategy.DEEPSPEED,
}
_PRECISIONS = {
    trainer_pb2.PRECISION_FP32: Precision.FP32,
    trainer_pb2.PRECISION_BF16: Precision.BF16,
    trainer_pb2.PRECISION_FP16: Precision.FP16,
}
_SCHEDULERS = {
    trainer_pb2.LR_SCHEDULER_LINEAR: Scheduler.LINEAR,
    trainer_pb2.LR_SCHEDULER_COSINE: Scheduler.COSINE,
    trainer_pb2.LR_SCHEDULER_COSINE_WITH_RESTARTS: Scheduler.COSINE_WITH_RESTARTS,
    trainer_pb2.LR_SCHEDULER_POLYNOMIAL: Scheduler.POLYNOMIAL,
    trainer_pb2.LR_SCHEDULER_CONSTANT: Scheduler.CONSTANT,
    trainer_pb2.LR_SCHEDULER_CONSTANT_WITH_WARMUP: Scheduler.CONSTANT_WITH_WARMUP,
}
_OPTIMIZERS = {
    trainer_pb2.OPTIMIZER_ADAMW: OptimizerKind.ADAMW,
    trainer_pb2.OPTIMIZER_PAGED_ADAMW_8BIT: OptimizerKind.PAGED_ADAMW_8BIT,
    trainer_pb2.OPTIMIZER_PAGED_ADAMW_32BIT: OptimizerKind.PAGED_ADAMW_32BIT,
    trainer_pb2.OPTIMIZER_SGD: OptimizerKind.SGD,
}
_DPO_LOSSES = {
    trainer_pb2.DPO_LOSS_TYPE_SIGMOID: DpoLoss.SIGMOID,
    trainer_pb2.DPO_LOSS_TYPE_HINGE: DpoLoss.HINGE,
    trainer_pb2.DPO_LOSS_TYPE_IPO: DpoLoss.IPO,
    trainer_pb2.DPO_LOSS_TYPE_ROBUST: DpoLoss.ROBUST,
}
_QUANT_TYPES = {
    trainer_pb2.QUANT_TYPE_NF4: QuantType.NF4,
    trainer_pb2.QUANT_TYPE_FP4: QuantType.FP4,
    trainer_pb2.QUANT_TYPE_INT8: QuantType.INT8,
}
_FORMATS = {
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
    return _inverse(_FORMATS)[fmt]


def strategy_to_pb(strategy: Strategy) -> int:
    """The `DistributionStrategy` protobuf value of a domain strategy."""
    return _inverse(_STRATEGIES)[strategy]


def data_format_of(spec: trainer_pb2.TrainJobSpec) -> DataFormat:
    """The dataset format a spec asks for (AUTO when unset)."""
    return _FORMATS.get(spec.dataset_format, DataFormat.AUTO)


def task_of(spec: trainer_pb2.TrainJobSpec) -> Task | None:
    """The task of a spec, or None when unset."""
    return _TASKS.get(spec.task)


# -- the resolved configuration -------------------------------------------------------------


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
        tuner = _TUNERS[spec.tuner]
        precision = _PRECISIONS[h.precision]
        quant = None
        if tuner is Tuner.QLORA:
            quant = QuantSettings(
                bits=q.bits,
                quant_type=_QUANT_TYPES[q.quant_type],
                double_quant=q.double_quant,
                compute_dtype=_PRECISIONS.get(q.compute_dtype, precision),
            )
        return cls(
            task=_TASKS[spec.task],
            tuner=tuner,
            data_format=_FORMATS.get(spec.dataset_format, DataFormat.AUTO),
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
                scheduler=_SCHEDULERS[h.lr_scheduler],
                warmup_ratio=h.warmup_ratio,
                warmup_steps=h.warmup_steps,
                weight_decay=h.weight_decay,
                batch_size=h.per_device_batch_size,
                grad_accum=h.gradient_accumulation_steps,
                max_seq_length=h.max_seq_length,
                packing=h.packing and _TASKS[spec.task] is not Task.DPO,
                seed=h.seed,
                precision=precision,
                gradient_checkpointing=h.gradient_checkpointing,
                optimizer=_OPTIMIZERS[h.optimizer],
                max_grad_norm=h.max_grad_norm,
            ),
            dpo=DpoSettings(
                beta=spec.dpo.beta or DEFAULT_DPO_BETA,
                loss=_DPO_LOSSES.get(spec.dpo.loss_type, DpoLoss.SIGMOID),
                reference=format_ref(spec.dpo.reference_model)
                if spec.dpo.reference_model.name
                else "",
                label_smoothing=spec.dpo.label_smoothing,
            ),
            dist=DistSettings(
                strategy=_STRATEGIES.get(d.strategy, Strategy.AUTO),
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


# -- defaults -------------------------------------------------------------------------------


def fill_defaults(spec: trainer_pb2.TrainJobSpec) -> trainer_pb2.TrainJobSpec:
    """Returns a copy of `spec` with every "zero means default" field set to its default.

    Fields whose default depends on the model or the dataset (target modules, sequence
    length, the dataset format, the strategy) are resolved later by the plan.
    """
    out = trainer_pb2.TrainJobSpec()
    out.CopyFrom(spec)
    task = _TASKS.get(out.task)
    if not out.dataset_format:
        out.dataset_format = trainer_pb2.DATASET_FORMAT_AUTO
    if not out.tuner:
        out.tuner = trainer_pb2.TUNER_LORA
    tuner = _TUNERS[out.tuner]
    if not out.output_name and out.base_model.name and task is not None:
        out.output_name = f"{out.base_model.name}-{task.value}"[:128]
    if tuner.adapter:
        out.lora.rank = out.lora.rank or DEFAULT_LORA_RANK
        out.lora.alpha = out.lora.alpha or 2 * out.lora.rank
    h = out.hyper_parameters
    h.epochs = h.epochs or 1
    h.learning_rate = h.learning_rate or (DEFAULT_ADAPTER_LR if tuner.adapter else DEFAULT_FULL_LR)
    h.lr_scheduler = h.lr_scheduler or trainer_pb2.LR_SCHEDULER_LINEAR
    h.per_device_batch_size = h.per_device_batch_size or 1
    h.gradient_accumulation_steps = h.gradient_accumulation_steps or 1
    if not h.HasField("seed"):
        h.seed = DEFAULT_SEED
    if not h.HasField("max_grad_norm"):
        h.max_grad_norm = 1.0
    gpu = out.distribution.resources.gpus_per_worker > 0
    if not h.precision:
        # bf16 pays off on GPUs; on CPUs without bf16 units it is slower than fp32.
        h.precision = trainer_pb2.PRECISION_BF16 if gpu else trainer_pb2.PRECISION_FP32
    if not h.optimizer:
        h.optimizer = (
            trainer_pb2.OPTIMIZER_PAGED_ADAMW_32BIT
            if tuner is Tuner.QLORA
            else trainer_pb2.OPTIMIZER_ADAMW
        )
    if tuner is Tuner.QLORA:
        q = out.quantization
        q.bits = q.bits or 4
        if not q.quant_type:
            q.quant_type = (
                trainer_pb2.QUANT_TYPE_NF4 if q.bits == 4 else trainer_pb2.QUANT_TYPE_INT8
            )
        if not q.compute_dtype:
            q.compute_dtype = h.precision
    if task is Task.DPO:
        out.dpo.beta = out.dpo.beta or DEFAULT_DPO_BETA
        out.dpo.loss_type = out.dpo.loss_type or trainer_pb2.DPO_LOSS_TYPE_SIGMOID
    d = out.distribution
    if not d.strategy:
        d.strategy = trainer_pb2.DISTRIBUTION_STRATEGY_AUTO
    if d.strategy == trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED and not d.HasField("zero_stage"):
        d.zero_stage = DEFAULT_ZERO_STAGE
    d.resources.num_workers = d.resources.num_workers or 1
    if not out.checkpointing.HasField("resume_enabled"):
        out.checkpointing.resume_enabled = True
    return out


# -- checks ---------------------------------------------------------------------------------


@dataclass
class SpecReport:
    """Problems (the spec is invalid) and warnings (it runs, maybe not as meant)."""

    problems: list[FieldViolation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, path: str, description: str) -> None:
        """Records a problem with the field at `path` (e.g. `spec.lora.rank`)."""
        self.problems.append(FieldViolation(path, description))

    def check(self, ok: bool, path: str, description: str) -> bool:
        """Records a problem unless `ok`; returns `ok`."""
        if not ok:
            self.problem(path, description)
        return ok


def _check_ref(report: SpecReport, ref: common_pb2.ModelRef, path: str, what: str) -> None:
    if not ref.name:
        report.problem(path, f"name the {what}: a registry reference such as `name` or `name:3`")
        return
    try:
        check_name(ref.name, "model name")
        if ref.WhichOneof("selector") == "alias":
            check_name(ref.alias, "alias")
    except RefError as exc:
        report.problem(path, str(exc))


def check_spec(spec: trainer_pb2.TrainJobSpec, *, gpus_available: bool = False) -> SpecReport:
    """Finds every problem of a spec that needs no file to see.

    Args:
        spec: The spec as submitted (defaults not yet filled).
        gpus_available: Whether the cluster has GPUs (fp16 and GPU requests need them).

    Returns:
        The problems (each naming its field) and warnings.
    """
    r = SpecReport()
    task = _TASKS.get(spec.task)
    r.check(task is not None, "spec.task", "choose the task: SFT, PRETRAIN or DPO")
    _check_ref(r, spec.base_model, "spec.base_model", "model to start from")
    _check_ref(r, spec.dataset, "spec.dataset", "training dataset (a DATASET version)")
    if spec.eval_dataset.name:
        _check_ref(r, spec.eval_dataset, "spec.eval_dataset", "evaluation dataset")
    if spec.output_name:
        try:
            check_name(spec.output_name, "output name")
        except RefError as exc:
            r.problem("spec.output_name", str(exc))

    fmt = _FORMATS.get(spec.dataset_format, DataFormat.AUTO)
    if task is not None and fmt is not DataFormat.AUTO and fmt not in FORMATS_FOR_TASK[task]:
        allowed = ", ".join(sorted(f.name for f in FORMATS_FOR_TASK[task]))
        r.problem(
            "spec.dataset_format",
            f"{fmt.name} records cannot train {task.name}; use one of {allowed} (or AUTO)",
        )

    tuner = _TUNERS.get(spec.tuner or trainer_pb2.TUNER_LORA)
    _check_tuner(r, spec, tuner)
    _check_hyper(r, spec, task, tuner, gpus_available)
    _check_dpo(r, spec, task)
    _check_distribution(r, spec, tuner, gpus_available)
    return r


def _check_tuner(r: SpecReport, spec: trainer_pb2.TrainJobSpec, tuner: Tuner) -> None:
    lora = spec.lora
    if tuner.adapter:
        r.check(
            lora.rank <= MAX_LORA_RANK,
            "spec.lora.rank",
            f"rank {lora.rank} is too large; use 1..{MAX_LORA_RANK} (8-64 is typical)",
        )
        r.check(
            0.0 <= lora.dropout < 1.0 and math.isfinite(lora.dropout),
            "spec.lora.dropout",
            f"dropout must be in [0, 1), got {lora.dropout}",
        )
        for i, name in enumerate(lora.target_modules):
            r.check(
                bool(name.strip()), f"spec.lora.target_modules[{i}]", "module names cannot be empty"
            )
        if "all-linear" in lora.target_modules and len(lora.target_modules) > 1:
            r.problem(
                "spec.lora.target_modules",
                "`all-linear` already selects every linear layer; give it alone or list modules",
            )
    elif lora.rank or lora.alpha or lora.target_modules or lora.modules_to_save:
        r.warnings.append("spec.lora is ignored: FULL tuning trains every parameter")

    q = spec.quantization
    quant_given = q.bits or q.quant_type or q.double_quant or q.compute_dtype
    if tuner is not Tuner.QLORA:
        if quant_given:
            r.problem(
                "spec.quantization",
                f"quantizing the base applies to QLORA only; set tuner to QLORA or clear "
                f"quantization (tuner is {tuner.name})",
            )
        return
    bits = q.bits or 4
    if not r.check(bits in (4, 8), "spec.quantization.bits", f"use 4 or 8 bits, not {bits}"):
        return
    qtype = _QUANT_TYPES.get(q.quant_type)
    if qtype is not None:
        if bits == 4 and qtype is QuantType.INT8:
            r.problem("spec.quantization.quant_type", "INT8 needs 8 bits; with 4 use NF4 or FP4")
        if bits == 8 and qtype is not QuantType.INT8:
            r.problem(
                "spec.quantization.quant_type", f"{qtype.name} is a 4-bit type; with 8 use INT8"
            )
    if bits == 8 and q.double_quant:
        r.problem("spec.quantization.double_quant", "double quantization applies to 4 bits only")
    if (
        q.compute_dtype == trainer_pb2.PRECISION_FP16
        and not spec.distribution.resources.gpus_per_worker
    ):
        r.problem("spec.quantization.compute_dtype", "fp16 compute needs GPUs; use BF16 or FP32")


def _check_hyper(
    r: SpecReport,
    spec: trainer_pb2.TrainJobSpec,
    task: Task | None,
    tuner: Tuner,
    gpus_available: bool,
) -> None:
    h = spec.hyper_parameters
    lr = h.learning_rate
    if r.check(
        math.isfinite(lr) and 0.0 <= lr < 1.0,
        "spec.hyper_parameters.learning_rate",
        f"learning rate must be in [0, 1), got {lr}",
    ) and lr > (1e-2 if tuner.adapter else 1e-3):
        r.warnings.append(f"learning rate {lr:g} is unusually high for {tuner.name} tuning")
    r.check(
        0.0 <= h.warmup_ratio <= 1.0,
        "spec.hyper_parameters.warmup_ratio",
        f"warm-up ratio must be in [0, 1], got {h.warmup_ratio}",
    )
    r.check(
        h.weight_decay >= 0.0 and math.isfinite(h.weight_decay),
        "spec.hyper_parameters.weight_decay",
        "weight decay cannot be negative",
    )
    if h.HasField("max_grad_norm"):
        r.check(
            h.max_grad_norm >= 0.0 and math.isfinite(h.max_grad_norm),
            "spec.hyper_parameters.max_grad_norm",
            "gradient clipping norm cannot be negative (0 disables clipping)",
        )
    r.check(
        h.max_seq_length == 0 or h.max_seq_length >= 16,
        "spec.hyper_parameters.max_seq_length",
        f"{h.max_seq_length} tokens is too short for any example; use at least 16",
    )
    r.check(
        h.per_device_batch_size <= 4096,
        "spec.hyper_parameters.per_device_batch_size",
        "batch size above 4096 per worker is not supported",
    )
    if h.precision == trainer_pb2.PRECISION_FP16 and not (
        gpus_available and spec.distribution.resources.gpus_per_worker > 0
    ):
        r.problem(
            "spec.hyper_parameters.precision",
            "fp16 needs GPU workers; on CPU use BF16 or FP32",
        )
    if h.optimizer in (trainer_pb2.OPTIMIZER_PAGED_ADAMW_8BIT,) and tuner is Tuner.FULL:
        r.warnings.append("8-bit optimizer state on FULL tuning may cost accuracy")
    if task is Task.DPO and h.packing:
        r.warnings.append("packing is ignored for DPO (chosen and rejected are scored whole)")


def _check_dpo(r: SpecReport, spec: trainer_pb2.TrainJobSpec, task: Task | None) -> None:
    dpo = spec.dpo
    given = dpo.beta or dpo.loss_type or dpo.reference_model.name or dpo.label_smoothing
    if task is not Task.DPO:
        if given:
            r.problem("spec.dpo", "DPO settings apply to the DPO task only; clear them")
        return
    r.check(
        dpo.beta >= 0.0 and math.isfinite(dpo.beta),
        "spec.dpo.beta",
        f"beta must be positive, got {dpo.beta}",
    )
    r.check(
        0.0 <= dpo.label_smoothing < 0.5,
        "spec.dpo.label_smoothing",
        f"label smoothing must be in [0, 0.5), got {dpo.label_smoothing}",
    )
    if dpo.loss_type == trainer_pb2.DPO_LOSS_TYPE_ROBUST and not dpo.label_smoothing:
        r.warnings.append("ROBUST with label_smoothing 0 is the SIGMOID loss; set label_smoothing")
    if dpo.reference_model.name:
        _check_ref(r, dpo.reference_model, "spec.dpo.reference_model", "reference model")


def _check_distribution(
    r: SpecReport, spec: trainer_pb2.TrainJobSpec, tuner: Tuner, gpus_available: bool
) -> None:
    d = spec.distribution
    strategy = _STRATEGIES.get(d.strategy or trainer_pb2.DISTRIBUTION_STRATEGY_AUTO)
    workers = d.resources.num_workers or 1
    deepspeed_ok = strategy in (Strategy.DEEPSPEED, Strategy.AUTO)
    stage = d.zero_stage if d.HasField("zero_stage") else None
    if stage is not None:
        if not deepspeed_ok:
            r.problem(
                "spec.distribution.zero_stage",
                f"a ZeRO stage applies to DEEPSPEED only (strategy is {strategy.name})",
            )
        r.check(stage <= 3, "spec.distribution.zero_stage", f"ZeRO stages are 0..3, not {stage}")
    effective_stage = stage if stage is not None else DEFAULT_ZERO_STAGE
    if d.offload_optimizer:
        if strategy is Strategy.DEEPSPEED:
            r.check(
                effective_stage >= 1,
                "spec.distribution.offload_optimizer",
                "optimizer offload needs ZeRO stage 1 or higher",
            )
        else:
            r.check(
                strategy is Strategy.AUTO,
                "spec.distribution.offload_optimizer",
                f"optimizer offload needs DEEPSPEED (strategy is {strategy.name})",
            )
    if d.offload_params:
        if strategy is Strategy.DEEPSPEED:
            r.check(
                effective_stage == 3,
                "spec.distribution.offload_params",
                "parameter offload needs ZeRO stage 3 (parameters are only partitioned there)",
            )
        else:
            r.check(
                strategy is Strategy.AUTO,
                "spec.distribution.offload_params",
                f"parameter offload needs DEEPSPEED ZeRO-3 (strategy is {strategy.name})",
            )
    if d.deepspeed_config_json:
        if not deepspeed_ok:
            r.problem(
                "spec.distribution.deepspeed_config_json",
                f"a DeepSpeed config applies to DEEPSPEED only (strategy is {strategy.name})",
            )
        try:
            parsed = json.loads(d.deepspeed_config_json)
            r.check(
                isinstance(parsed, dict),
                "spec.distribution.deepspeed_config_json",
                "must be a JSON object",
            )
        except json.JSONDecodeError as exc:
            r.problem(
                "spec.distribution.deepspeed_config_json",
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            )
    if strategy is Strategy.NONE:
        r.check(
            workers == 1,
            "spec.distribution.resources.num_workers",
            f"strategy NONE runs one worker; use DDP, FSDP or DEEPSPEED for {workers}",
        )
    res = d.resources
    r.check(res.num_workers <= 1024, "spec.distribution.resources.num_workers", "at most 1024")
    r.check(res.cpus_per_worker >= 0, "spec.distribution.resources.cpus_per_worker", "negative")
    r.check(res.gpus_per_worker >= 0, "spec.distribution.resources.gpus_per_worker", "negative")
    if res.gpus_per_worker > 0 and not gpus_available:
        r.problem(
            "spec.distribution.resources.gpus_per_worker",
            "the cluster has no GPUs; set 0 to train on CPU workers",
        )
    sharded = (strategy is Strategy.DEEPSPEED and effective_stage == 3) or (
        strategy is Strategy.FSDP
    )
    if tuner is Tuner.QLORA and sharded:
        r.problem(
            "spec.distribution.strategy",
            "QLoRA's bitsandbytes 4/8-bit base weights cannot be partitioned by ZeRO-3 or FSDP "
            "here; use DEEPSPEED with zero_stage <= 2, DDP, or the LORA tuner",
        )
    if tuner is Tuner.QLORA and d.offload_params:
        r.problem(
            "spec.distribution.offload_params",
            "quantized base weights cannot be offloaded; use LORA to offload parameters",
        )
    if tuner is Tuner.DORA and sharded:
        r.problem(
            "spec.distribution.strategy",
            "DoRA's magnitude update reads each whole base weight, which ZeRO-3 and FSDP "
            "partition; use zero_stage <= 2 or DDP, or the LORA tuner",
        )
