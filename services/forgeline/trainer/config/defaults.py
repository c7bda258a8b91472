"""Default values of a training spec, and `fill_defaults`, which writes them into a spec.

`fill_defaults` turns a submitted `TrainJobSpec` into the spec as stored: every zero that
means "default" replaced by its value. Defaults that depend on the model or the dataset
are left to the plan.
"""

from __future__ import annotations

from forgeline.trainer.config.enums import TASK_FROM_PB, TUNER_FROM_PB, Task, Tuner
from forgeline.v1 import trainer_pb2

DEFAULT_LORA_RANK = 8
DEFAULT_ADAPTER_LR = 2e-4
DEFAULT_FULL_LR = 2e-5
DEFAULT_SEED = 42
DEFAULT_MAX_SEQ_LENGTH = 2048
DEFAULT_DPO_BETA = 0.1
DEFAULT_ZERO_STAGE = 2


def cpu_has_bf16() -> bool:
    """Whether this machine's CPUs compute bfloat16 natively (AVX-512 BF16 or AMX).

    On such CPUs bf16 autocast trains about twice as fast as fp32 and with less memory;
    on others it is emulated and slower.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fill_defaults(
    spec: trainer_pb2.TrainJobSpec, *, cpu_bf16: bool = False
) -> trainer_pb2.TrainJobSpec:
    """Returns a copy of `spec` with every "zero means default" field set to its default.

    Fields whose default depends on the model or the dataset (target modules, sequence
    length, the dataset format, the strategy) are resolved later by the plan.

    Args:
        spec: The submitted spec.
        cpu_bf16: Whether the cluster's CPUs compute bf16 natively (`cpu_has_bf16` on a
            worker); CPU jobs then default to bf16 as GPU jobs do.
    """
    out = trainer_pb2.TrainJobSpec()
    out.CopyFrom(spec)
    task = TASK_FROM_PB.get(out.task)
    if not out.dataset_format:
        out.dataset_format = trainer_pb2.DATASET_FORMAT_AUTO
    if not out.tuner:
        out.tuner = trainer_pb2.TUNER_LORA
    tuner = TUNER_FROM_PB[out.tuner]
    if not out.output_name and out.base_model.name and task is not None:
        out.output_name = f"{out.base_model.name}-{task.value}"[:128]
    if tuner.adapter:
        out.lora.rank = out.lora.rank or DEFAULT_LORA_RANK
        out.lora.alpha = out.lora.alpha or 2 * out.lora.rank
    h = out.hyper_parameters
    h.epochs = h.epochs or 1
    h.learning_rate = h.learning_rate or (DEFAULT_ADAPTER_LR if tuner.adapter else DEFAULT_FULL_LR)
    # Held at the peak for most of the run, then decayed: on short runs it teaches as much as
    # a constant rate (bench/learning.py), on long ones it ends as a decaying one does.
    h.lr_scheduler = h.lr_scheduler or trainer_pb2.LR_SCHEDULER_WARMUP_STABLE_DECAY
    h.per_device_batch_size = h.per_device_batch_size or 1
    h.gradient_accumulation_steps = h.gradient_accumulation_steps or 1
    if not h.HasField("seed"):
        h.seed = DEFAULT_SEED
    if not h.HasField("max_grad_norm"):
        h.max_grad_norm = 1.0
    if not h.HasField("packing"):
        h.packing = task in (Task.SFT, Task.PRETRAIN)
    gpu = out.distribution.resources.gpus_per_worker > 0
    if not h.precision:
        # bf16 pays off on GPUs and on CPUs with bf16 units; elsewhere it is slower than
        # fp32. DeepSpeed and bitsandbytes on CPU keep fp32.
        cpu_ok = (
            cpu_bf16
            and tuner is not Tuner.QLORA
            and out.distribution.strategy != trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED
        )
        h.precision = trainer_pb2.PRECISION_BF16 if gpu or cpu_ok else trainer_pb2.PRECISION_FP32
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
