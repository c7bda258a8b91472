"""Spec checks that need no file: every problem of a submitted spec, each naming its field.

`check_spec` looks at a spec on its own (the plan later checks it against the model and
the data) and returns a `SpecReport`: the problems, collected in one `Violations`, and
warnings about settings that run but may not do what was meant.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from forgeline.client.exceptions import Violations
from forgeline.client.refs import RefError, check_name
from forgeline.trainer.config.deepspeed_json import deepspeed_json_problems
from forgeline.trainer.config.defaults import DEFAULT_ZERO_STAGE
from forgeline.trainer.config.enums import (
    FORMAT_FROM_PB,
    FORMATS_FOR_TASK,
    QUANT_TYPE_FROM_PB,
    STRATEGY_FROM_PB,
    TASK_FROM_PB,
    TUNER_FROM_PB,
    DataFormat,
    QuantType,
    Strategy,
    Task,
    Tuner,
)
from forgeline.v1 import common_pb2, trainer_pb2

MAX_LORA_RANK = 4096


@dataclass
class SpecReport:
    """Problems (the spec is invalid) and warnings (it runs, maybe not as meant).

    Attributes:
        problems: Every problem, each naming its field (e.g. `spec.lora.rank`).
        warnings: Settings that run but may not do what was meant.
    """

    problems: Violations = field(default_factory=Violations)
    warnings: list[str] = field(default_factory=list)


def _check_ref(report: SpecReport, ref: common_pb2.ModelRef, path: str, what: str) -> None:
    if not ref.name:
        report.problems.add(
            path, f"name the {what}: a registry reference such as `name` or `name:3`"
        )
        return
    try:
        check_name(ref.name, "model name")
        if ref.WhichOneof("selector") == "alias":
            check_name(ref.alias, "alias")
    except RefError as exc:
        report.problems.add(path, str(exc))


def check_spec(spec: trainer_pb2.TrainJobSpec, *, gpus_available: bool = False) -> SpecReport:
    """Finds every problem of a spec that needs no file to see.

    Args:
        spec: The spec as submitted (defaults not yet filled).
        gpus_available: Whether the cluster has GPUs (fp16 and GPU requests need them).

    Returns:
        The problems (each naming its field) and warnings.
    """
    r = SpecReport()
    task = TASK_FROM_PB.get(spec.task)
    r.problems.check(task is not None, "spec.task", "choose the task: SFT, PRETRAIN or DPO")
    _check_ref(r, spec.base_model, "spec.base_model", "model to start from")
    _check_ref(r, spec.dataset, "spec.dataset", "training dataset (a DATASET version)")
    if spec.eval_dataset.name:
        _check_ref(r, spec.eval_dataset, "spec.eval_dataset", "evaluation dataset")
    if spec.output_name:
        try:
            check_name(spec.output_name, "output name")
        except RefError as exc:
            r.problems.add("spec.output_name", str(exc))

    fmt = FORMAT_FROM_PB.get(spec.dataset_format, DataFormat.AUTO)
    if task is not None and fmt is not DataFormat.AUTO and fmt not in FORMATS_FOR_TASK[task]:
        allowed = ", ".join(sorted(f.name for f in FORMATS_FOR_TASK[task]))
        r.problems.add(
            "spec.dataset_format",
            f"{fmt.name} records cannot train {task.name}; use one of {allowed} (or AUTO)",
        )

    tuner = TUNER_FROM_PB.get(spec.tuner or trainer_pb2.TUNER_LORA)
    _check_tuner(r, spec, tuner)
    _check_hyper(r, spec, task, tuner, gpus_available)
    _check_dpo(r, spec, task)
    _check_distribution(r, spec, tuner, gpus_available)
    return r


def _check_tuner(r: SpecReport, spec: trainer_pb2.TrainJobSpec, tuner: Tuner) -> None:
    lora = spec.lora
    if tuner.adapter:
        r.problems.check(
            lora.rank <= MAX_LORA_RANK,
            "spec.lora.rank",
            f"rank {lora.rank} is too large; use 1..{MAX_LORA_RANK} (8-64 is typical)",
        )
        r.problems.check(
            0.0 <= lora.dropout < 1.0 and math.isfinite(lora.dropout),
            "spec.lora.dropout",
            f"dropout must be in [0, 1), got {lora.dropout}",
        )
        for i, name in enumerate(lora.target_modules):
            r.problems.check(
                bool(name.strip()), f"spec.lora.target_modules[{i}]", "module names cannot be empty"
            )
        if "all-linear" in lora.target_modules and len(lora.target_modules) > 1:
            r.problems.add(
                "spec.lora.target_modules",
                "`all-linear` already selects every linear layer; give it alone or list modules",
            )
    elif lora.rank or lora.alpha or lora.target_modules or lora.modules_to_save:
        r.warnings.append("spec.lora is ignored: FULL tuning trains every parameter")

    q = spec.quantization
    quant_given = q.bits or q.quant_type or q.double_quant or q.compute_dtype
    if tuner is not Tuner.QLORA:
        if quant_given:
            r.problems.add(
                "spec.quantization",
                f"quantizing the base applies to QLORA only; set tuner to QLORA or clear "
                f"quantization (tuner is {tuner.name})",
            )
        return
    bits = q.bits or 4
    if not r.problems.check(
        bits in (4, 8), "spec.quantization.bits", f"use 4 or 8 bits, not {bits}"
    ):
        return
    qtype = QUANT_TYPE_FROM_PB.get(q.quant_type)
    if qtype is not None:
        if bits == 4 and qtype is QuantType.INT8:
            r.problems.add(
                "spec.quantization.quant_type", "INT8 needs 8 bits; with 4 use NF4 or FP4"
            )
        if bits == 8 and qtype is not QuantType.INT8:
            r.problems.add(
                "spec.quantization.quant_type", f"{qtype.name} is a 4-bit type; with 8 use INT8"
            )
    if bits == 8 and q.double_quant:
        r.problems.add(
            "spec.quantization.double_quant", "double quantization applies to 4 bits only"
        )
    if (
        q.compute_dtype == trainer_pb2.PRECISION_FP16
        and not spec.distribution.resources.gpus_per_worker
    ):
        r.problems.add(
            "spec.quantization.compute_dtype", "fp16 compute needs GPUs; use BF16 or FP32"
        )


def _check_hyper(
    r: SpecReport,
    spec: trainer_pb2.TrainJobSpec,
    task: Task | None,
    tuner: Tuner,
    gpus_available: bool,
) -> None:
    h = spec.hyper_parameters
    lr = h.learning_rate
    if r.problems.check(
        math.isfinite(lr) and 0.0 <= lr < 1.0,
        "spec.hyper_parameters.learning_rate",
        f"learning rate must be in [0, 1), got {lr}",
    ) and lr > (1e-2 if tuner.adapter else 1e-3):
        r.warnings.append(f"learning rate {lr:g} is unusually high for {tuner.name} tuning")
    r.problems.check(
        0.0 <= h.warmup_ratio <= 1.0,
        "spec.hyper_parameters.warmup_ratio",
        f"warm-up ratio must be in [0, 1], got {h.warmup_ratio}",
    )
    r.problems.check(
        h.weight_decay >= 0.0 and math.isfinite(h.weight_decay),
        "spec.hyper_parameters.weight_decay",
        "weight decay cannot be negative",
    )
    if h.HasField("max_grad_norm"):
        r.problems.check(
            h.max_grad_norm >= 0.0 and math.isfinite(h.max_grad_norm),
            "spec.hyper_parameters.max_grad_norm",
            "gradient clipping norm cannot be negative (0 disables clipping)",
        )
    r.problems.check(
        h.max_seq_length == 0 or h.max_seq_length >= 16,
        "spec.hyper_parameters.max_seq_length",
        f"{h.max_seq_length} tokens is too short for any example; use at least 16",
    )
    r.problems.check(
        h.per_device_batch_size <= 4096,
        "spec.hyper_parameters.per_device_batch_size",
        "batch size above 4096 per worker is not supported",
    )
    if h.precision == trainer_pb2.PRECISION_FP16 and not (
        gpus_available and spec.distribution.resources.gpus_per_worker > 0
    ):
        r.problems.add(
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
            r.problems.add("spec.dpo", "DPO settings apply to the DPO task only; clear them")
        return
    r.problems.check(
        dpo.beta >= 0.0 and math.isfinite(dpo.beta),
        "spec.dpo.beta",
        f"beta must be positive, got {dpo.beta}",
    )
    r.problems.check(
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
    strategy = STRATEGY_FROM_PB.get(d.strategy or trainer_pb2.DISTRIBUTION_STRATEGY_AUTO)
    workers = d.resources.num_workers or 1
    deepspeed_ok = strategy in (Strategy.DEEPSPEED, Strategy.AUTO)
    stage = d.zero_stage if d.HasField("zero_stage") else None
    if stage is not None:
        if not deepspeed_ok:
            r.problems.add(
                "spec.distribution.zero_stage",
                f"a ZeRO stage applies to DEEPSPEED only (strategy is {strategy.name})",
            )
        r.problems.check(
            stage <= 3, "spec.distribution.zero_stage", f"ZeRO stages are 0..3, not {stage}"
        )
    effective_stage = stage if stage is not None else DEFAULT_ZERO_STAGE
    if d.offload_optimizer:
        if strategy is Strategy.DEEPSPEED:
            r.problems.check(
                effective_stage >= 1,
                "spec.distribution.offload_optimizer",
                "optimizer offload needs ZeRO stage 1 or higher",
            )
        else:
            r.problems.check(
                strategy is Strategy.AUTO,
                "spec.distribution.offload_optimizer",
                f"optimizer offload needs DEEPSPEED (strategy is {strategy.name})",
            )
    if d.offload_params:
        if strategy is Strategy.DEEPSPEED:
            r.problems.check(
                effective_stage == 3,
                "spec.distribution.offload_params",
                "parameter offload needs ZeRO stage 3 (parameters are only partitioned there)",
            )
        else:
            r.problems.check(
                strategy is Strategy.AUTO,
                "spec.distribution.offload_params",
                f"parameter offload needs DEEPSPEED ZeRO-3 (strategy is {strategy.name})",
            )
    if d.deepspeed_config_json:
        if not deepspeed_ok:
            r.problems.add(
                "spec.distribution.deepspeed_config_json",
                f"a DeepSpeed config applies to DEEPSPEED only (strategy is {strategy.name})",
            )
        try:
            parsed = json.loads(d.deepspeed_config_json)
        except json.JSONDecodeError as exc:
            r.problems.add(
                "spec.distribution.deepspeed_config_json",
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            )
        else:
            # Only known settings; paths must stay inside the job's folder.
            r.problems.extend(deepspeed_json_problems(parsed))
    if strategy is Strategy.NONE:
        r.problems.check(
            workers == 1,
            "spec.distribution.resources.num_workers",
            f"strategy NONE runs one worker; use DDP, FSDP or DEEPSPEED for {workers}",
        )
    res = d.resources
    r.problems.check(
        res.num_workers <= 1024, "spec.distribution.resources.num_workers", "at most 1024"
    )
    r.problems.check(
        res.cpus_per_worker >= 0, "spec.distribution.resources.cpus_per_worker", "negative"
    )
    r.problems.check(
        res.gpus_per_worker >= 0, "spec.distribution.resources.gpus_per_worker", "negative"
    )
    if res.gpus_per_worker > 0 and not gpus_available:
        r.problems.add(
            "spec.distribution.resources.gpus_per_worker",
            "the cluster has no GPUs; set 0 to train on CPU workers",
        )
    sharded = (strategy is Strategy.DEEPSPEED and effective_stage == 3) or (
        strategy is Strategy.FSDP
    )
    if tuner is Tuner.QLORA and strategy is Strategy.FSDP:
        # bitsandbytes keeps 4-bit weights in a storage dtype FSDP can shard, on GPUs only.
        quant = spec.quantization
        if res.gpus_per_worker <= 0:
            r.problems.add(
                "spec.distribution.strategy",
                "QLoRA with FSDP needs GPU workers: bitsandbytes stores its 4-bit weights in "
                "a dtype FSDP can shard only on GPUs; on CPU use DDP, DEEPSPEED with "
                "zero_stage <= 2, or the LORA tuner",
            )
        elif quant.bits == 8:
            r.problems.add(
                "spec.quantization.bits",
                "QLoRA with FSDP shards 4-bit weights only; use bits 4 or DDP",
            )
    elif tuner is Tuner.QLORA and sharded:
        r.problems.add(
            "spec.distribution.strategy",
            "QLoRA's bitsandbytes 4/8-bit base weights cannot be partitioned by ZeRO-3; use "
            "FSDP on GPU workers, DEEPSPEED with zero_stage <= 2, DDP, or the LORA tuner",
        )
    if tuner is Tuner.QLORA and d.offload_params:
        r.problems.add(
            "spec.distribution.offload_params",
            "quantized base weights cannot be offloaded; use LORA to offload parameters",
        )
    if tuner is Tuner.DORA and sharded:
        r.problems.add(
            "spec.distribution.strategy",
            "DoRA's magnitude update reads each whole base weight, which ZeRO-3 and FSDP "
            "partition; use zero_stage <= 2 or DDP, or the LORA tuner",
        )
