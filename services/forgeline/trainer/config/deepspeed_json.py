"""What a job's DeepSpeed JSON may say, and where the files it names may go.

A spec may carry DeepSpeed JSON that is merged over the config the trainer generates. Only
the sections and fields listed in `SCHEMA` are accepted: settings of the engine (batch
sizes, precision, ZeRO, offload, the optimizer and schedule DeepSpeed builds) and of its
local diagnostics (profiler, communication logger, TensorBoard and CSV monitors). Anything
else is refused at submission with its JSON path, notably what reaches off the cluster
(wandb, comet), names code to import (compile backends, autocast module lists, leaf
modules) or takes over files the trainer owns (checkpoints, data pipelines, autotuning).

Path-valued fields (profiler output, monitor folders, NVMe swap folders) must be relative
paths that stay inside the job: `resolve_paths` places them under the job's own folder
(`<job work dir>/deepspeed/`) before the run starts. Values are plain JSON only; nothing
in the JSON is imported, executed or unpickled.
"""

from __future__ import annotations

import copy
import math
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.client.exceptions import FieldViolation, Violations

FIELD = "spec.distribution.deepspeed_config_json"
# Where relative paths of the JSON land, inside the job's work directory (apart from the
# trainer's own files, so no setting can overwrite a checkpoint or the training log).
DEEPSPEED_DIR = "deepspeed"


@dataclass(frozen=True)
class Value:
    """One accepted leaf field: the JSON it takes.

    Attributes:
        kind: `bool`, `int`, `number`, `string`, `numbers` (a list of numbers), `strings`
            (a list of strings), `path` (a relative path kept inside the job) or `name` (a
            single path component, such as a monitor's job name).
        choices: The accepted strings of a `string` field (any when empty).
    """

    kind: str
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this field, or None."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "int":
            ok = _number(value) and float(value).is_integer()
            return None if ok else "must be a whole number"
        if self.kind == "number":
            return None if _number(value) else "must be a number"
        if self.kind == "numbers":
            ok = isinstance(value, list) and all(_number(v) for v in value)
            return None if ok else "must be a list of numbers"
        if self.kind == "strings":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            return None if ok else "must be a list of strings"
        if not isinstance(value, str):
            return "must be a string"
        if self.kind == "path":
            return _path_problem(value)
        if self.kind == "name":
            bad = not value or value in (".", "..") or any(c in value for c in "/\\\0")
            return "must be a plain name (no path separators, not `.` or `..`)" if bad else None
        if self.choices and value not in self.choices:
            return f"`{value}` is not accepted; use one of {', '.join(self.choices)}"
        return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _path_problem(value: str) -> str | None:
    if not value or "\0" in value:
        return "must be a non-empty relative path"
    if value.startswith(("/", "\\", "~")) or (len(value) > 1 and value[1] == ":"):
        return "absolute paths are refused; give a path relative to the job's folder"
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        return "`..` is refused; the path must stay inside the job's folder"
    return None


BOOL, INT, NUMBER, NUMBERS = Value("bool"), Value("int"), Value("number"), Value("numbers")
PATH, NAME, STRINGS = Value("path"), Value("name"), Value("strings")
DTYPE = Value("string", ("fp32", "fp16", "bf16"))

_OFFLOAD_COMMON = {"device": Value("string", ("none", "cpu", "nvme")), "nvme_path": PATH}
_OFFLOAD_PARAM = {
    **_OFFLOAD_COMMON,
    "pin_memory": BOOL,
    "buffer_count": INT,
    "buffer_size": INT,
    "max_in_cpu": INT,
}
_OFFLOAD_OPTIMIZER = {
    **_OFFLOAD_COMMON,
    "pin_memory": BOOL,
    "buffer_count": INT,
    "pipeline_read": BOOL,
    "pipeline_write": BOOL,
    "fast_init": BOOL,
    "ratio": NUMBER,
}
_ZERO = {
    "stage": INT,
    "contiguous_gradients": BOOL,
    "reduce_scatter": BOOL,
    "reduce_bucket_size": INT,
    "use_multi_rank_bucket_allreduce": BOOL,
    "allgather_partitions": BOOL,
    "allgather_bucket_size": INT,
    "overlap_comm": BOOL,
    "load_from_fp32_weights": BOOL,
    "offload_param": _OFFLOAD_PARAM,
    "offload_optimizer": _OFFLOAD_OPTIMIZER,
    "sub_group_size": INT,
    "stage3_prefetch_bucket_size": INT,
    "stage3_param_persistence_threshold": INT,
    "stage3_model_persistence_threshold": INT,
    "stage3_max_live_parameters": INT,
    "stage3_max_reuse_distance": INT,
    "stage3_gather_16bit_weights_on_model_save": BOOL,
    "ignore_unused_parameters": BOOL,
    "round_robin_gradients": BOOL,
    "zero_hpz_partition_size": INT,
    "zero_quantized_weights": BOOL,
    "zero_quantized_nontrainable_weights": BOOL,
    "zero_quantized_gradients": BOOL,
    "memory_efficient_linear": BOOL,
}
_OPTIMIZER_NUMBERS = (
    "lr", "eps", "weight_decay", "momentum", "dampening", "max_coeff", "min_coeff",
    "lr_decay", "initial_accumulator_value",
)  # fmt: skip
_OPTIMIZER_PARAMS = {
    **dict.fromkeys(_OPTIMIZER_NUMBERS, NUMBER),
    "betas": NUMBERS,
    **dict.fromkeys(("bias_correction", "amsgrad", "adam_w_mode", "nesterov"), BOOL),
}
_SCHEDULER_NUMBERS = (
    "lr_range_test_min_lr", "lr_range_test_step_rate", "lr_range_test_step_size",
    "cycle_first_step_size", "cycle_first_stair_count", "cycle_second_step_size",
    "cycle_second_stair_count", "decay_step_size", "cycle_min_lr", "cycle_max_lr",
    "decay_lr_rate", "cycle_min_mom", "cycle_max_mom", "decay_mom_rate", "warmup_min_lr",
    "warmup_max_lr", "warmup_num_steps", "warmup_min_ratio", "cos_min_ratio", "total_num_steps",
)  # fmt: skip
_SCHEDULER_PARAMS = {
    **dict.fromkeys(_SCHEDULER_NUMBERS, NUMBER),
    "lr_range_test_staircase": BOOL,
    "warmup_type": Value("string", ("log", "linear")),
}
_MONITOR = {"enabled": BOOL, "output_path": PATH, "job_name": NAME}

SCHEMA: dict[str, Any] = {
    "train_batch_size": INT,
    "train_micro_batch_size_per_gpu": INT,
    "gradient_accumulation_steps": INT,
    "gradient_clipping": NUMBER,
    "prescale_gradients": BOOL,
    "gradient_predivide_factor": NUMBER,
    "sparse_gradients": BOOL,
    "communication_data_type": DTYPE,
    "steps_per_print": INT,
    "wall_clock_breakdown": BOOL,
    "memory_breakdown": BOOL,
    "dump_state": BOOL,
    "zero_allow_untested_optimizer": BOOL,
    "zero_force_ds_cpu_optimizer": BOOL,
    "optimizer": {
        # DeepSpeed's own optimizers, or torch.optim's SGD: a closed list of names.
        "type": Value("string", ("Adam", "AdamW", "Adagrad", "Lamb", "Lion", "SGD")),
        "params": _OPTIMIZER_PARAMS,
    },
    "scheduler": {
        "type": Value(
            "string", ("LRRangeTest", "OneCycle", "WarmupLR", "WarmupDecayLR", "WarmupCosineLR")
        ),
        "params": _SCHEDULER_PARAMS,
    },
    "fp16": {
        "enabled": BOOL,
        "auto_cast": BOOL,
        "loss_scale": NUMBER,
        "initial_scale_power": INT,
        "loss_scale_window": INT,
        "hysteresis": INT,
        "consecutive_hysteresis": BOOL,
        "min_loss_scale": NUMBER,
    },
    "bf16": {"enabled": BOOL, "immediate_grad_update": BOOL, "check_grad_overflow": BOOL},
    "zero_optimization": _ZERO,
    "activation_checkpointing": {
        "partition_activations": BOOL,
        "cpu_checkpointing": BOOL,
        "contiguous_memory_optimization": BOOL,
        "number_checkpoints": INT,
        "synchronize_checkpoint_boundary": BOOL,
        "profile": BOOL,
    },
    "aio": {
        "block_size": INT,
        "queue_depth": INT,
        "intra_op_parallelism": INT,
        "single_submit": BOOL,
        "overlap_events": BOOL,
    },
    "flops_profiler": {
        "enabled": BOOL,
        "recompute_fwd_factor": NUMBER,
        "profile_step": INT,
        "module_depth": INT,
        "top_modules": INT,
        "detailed": BOOL,
        "output_file": PATH,
    },
    "comms_logger": {
        "enabled": BOOL,
        "verbose": BOOL,
        "prof_all": BOOL,
        "prof_ops": STRINGS,
        "debug": BOOL,
    },
    "tensorboard": _MONITOR,
    "csv_monitor": _MONITOR,
    "timers": {"throughput": {"enabled": BOOL, "synchronized": BOOL}},
    "data_types": {"grad_accum_dtype": DTYPE},
}

# Sections refused for a reason worth telling (any other unknown key is refused too).
_OWN_BATCHES = "the recipes feed their own batches; DeepSpeed's data pipeline is unused"
REFUSED = {
    "wandb": "sends metrics off the cluster; use tensorboard or csv_monitor",
    "comet": "sends metrics off the cluster; use tensorboard or csv_monitor",
    "checkpoint": "checkpoints belong to the trainer; use spec.checkpointing",
    "nebula": "checkpoints belong to the trainer; use spec.checkpointing",
    "data_efficiency": _OWN_BATCHES,
    "curriculum_learning": _OWN_BATCHES,
    "autotuning": "autotuning launches its own processes; tune with separate jobs",
    "compile": "compile backends name code to import",
    "torch_autocast": "its module lists name code to import; use hyper_parameters.precision",
}


def deepspeed_json_problems(config: Any, field: str = FIELD) -> list[FieldViolation]:
    """Every problem of a job's DeepSpeed JSON, each naming its JSON path under `field`.

    Args:
        config: The parsed JSON.
        field: The spec field the JSON came in (prefix of every reported path).
    """
    if not isinstance(config, dict):
        return [FieldViolation(field, "must be a JSON object")]
    found = Violations()
    _check(config, SCHEMA, field, found, top=True)
    return list(found)


def _check(config: dict, schema: dict, path: str, found: Violations, top: bool = False) -> None:
    for key, value in config.items():
        where = f"{path}.{key}"
        expected = schema.get(key)
        if expected is None:
            reason = REFUSED.get(key) if top else None
            if reason is None:
                accepted = ", ".join(sorted(schema))
                reason = f"not an accepted DeepSpeed setting here; accepted: {accepted}"
            found.add(where, f"refused: {reason}")
        elif isinstance(expected, dict):
            if isinstance(value, dict):
                _check(value, expected, where, found)
            else:
                found.add(where, "must be a JSON object")
        else:
            problem = expected.problem(value)
            if problem is not None:
                found.add(where, problem)


def resolve_paths(config: dict, job_dir: Path, field: str = FIELD) -> dict:
    """The JSON with every path-valued field placed under `job_dir / DEEPSPEED_DIR`.

    Checks the JSON again (a job stored before a rule existed must not slip past it).

    Args:
        config: The parsed JSON of a spec.
        job_dir: The job's work directory.
        field: The spec field the JSON came in.

    Raises:
        InvalidArgument: a field is refused or a path would leave the job's folder.
    """
    Violations(deepspeed_json_problems(config, field)).raise_if_any()
    root = Path(job_dir).resolve() / DEEPSPEED_DIR
    out = copy.deepcopy(config)
    _place(out, SCHEMA, root)
    return out


def _place(config: dict, schema: dict, root: Path) -> None:
    for key, value in config.items():
        expected = schema[key]
        if isinstance(expected, dict):
            _place(value, expected, root)
        elif expected.kind == "path":
            normal = posixpath.normpath(value.replace("\\", "/"))
            config[key] = str(root / normal)
