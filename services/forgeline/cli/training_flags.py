"""The training commands' options as spec fields: which field each option sets, the familiar
spellings of other trainers (Hugging Face `transformers`, ms-swift, LLaMA-Factory) that are
aliases of ours, `build_spec`, which sets the options given over a job file's spec, and
`command_line`, the `forgeline sft ...` line that gives a set of options (the console's
training form shows it).
"""

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from forgeline.client.labels import label
from forgeline.client.refs import parse_ref
from forgeline.v1 import trainer_pb2

# The spec field each option sets (the inputs, model and datasets, are set on submission).
FIELDS = {
    "output": "output_name",
    "dataset_format": "dataset_format",
    "tuner": "tuner",
    "lora_rank": "lora.rank",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "target_modules": "lora.target_modules",
    "modules_to_save": "lora.modules_to_save",
    "quantization_bit": "quantization.bits",
    "lora_dtype": "quantization.quant_type",
    "double_quant": "quantization.double_quant",
    "epochs": "hyper_parameters.epochs",
    "max_steps": "hyper_parameters.max_steps",
    "learning_rate": "hyper_parameters.learning_rate",
    "lr_scheduler": "hyper_parameters.lr_scheduler",
    "warmup_ratio": "hyper_parameters.warmup_ratio",
    "warmup_steps": "hyper_parameters.warmup_steps",
    "weight_decay": "hyper_parameters.weight_decay",
    "batch_size": "hyper_parameters.per_device_batch_size",
    "grad_accum": "hyper_parameters.gradient_accumulation_steps",
    "max_seq_len": "hyper_parameters.max_seq_length",
    "packing": "hyper_parameters.packing",
    "seed": "hyper_parameters.seed",
    "precision": "hyper_parameters.precision",
    "gradient_checkpointing": "hyper_parameters.gradient_checkpointing",
    "optimizer": "hyper_parameters.optimizer",
    "max_grad_norm": "hyper_parameters.max_grad_norm",
    "strategy": "distribution.strategy",
    "zero_stage": "distribution.zero_stage",
    "offload_optimizer": "distribution.offload_optimizer",
    "offload_params": "distribution.offload_params",
    "deepspeed": "distribution.deepspeed_config_json",
    "workers": "distribution.resources.num_workers",
    "cpus_per_worker": "distribution.resources.cpus_per_worker",
    "gpus_per_worker": "distribution.resources.gpus_per_worker",
    "save_every": "checkpointing.save_every_steps",
    "keep_last": "checkpointing.keep_last",
    "resume": "checkpointing.resume_enabled",
    "label": "labels",
    "beta": "dpo.beta",
    "loss_type": "dpo.loss_type",
    "reference_model": "dpo.reference_model",
    "label_smoothing": "dpo.label_smoothing",
}
# The options naming the job's inputs, and their fields.
INPUT_FIELDS = {"model": "base_model", "dataset": "dataset", "eval_dataset": "eval_dataset"}

# Options whose flag is not their name with `-` between words.
OPTION_FLAGS = {"learning_rate": "--lr"}

# Other spellings of our options: Hugging Face `TrainingArguments`, ms-swift, LLaMA-Factory.
ALIASES = {
    "model": ("--model-name-or-path", "--model_name_or_path"),
    "output": ("--output-name",),
    "tuner": ("--train-type", "--train_type", "--finetuning-type", "--finetuning_type"),
    "lora_rank": ("--lora_rank",),
    "lora_alpha": ("--lora_alpha",),
    "lora_dropout": ("--lora_dropout",),
    "target_modules": ("--target_modules", "--lora-target", "--lora_target"),
    "quantization_bit": ("--quantization_bit",),
    "epochs": ("--num-train-epochs", "--num_train_epochs"),
    "max_steps": ("--max_steps",),
    "learning_rate": ("--learning-rate", "--learning_rate"),
    "lr_scheduler": ("--lr-scheduler-type", "--lr_scheduler_type"),
    "warmup_ratio": ("--warmup_ratio",),
    "warmup_steps": ("--warmup_steps",),
    "weight_decay": ("--weight_decay",),
    "batch_size": ("--per-device-train-batch-size", "--per_device_train_batch_size"),
    "grad_accum": ("--gradient-accumulation-steps", "--gradient_accumulation_steps"),
    "max_seq_len": ("--max-length", "--max_length", "--cutoff-len", "--cutoff_len"),
    "gradient_checkpointing": ("--gradient_checkpointing",),
}
# Flags standing for a value of an option: `--bf16` is `--precision bf16`; `--no-X` turns X off.
FLAG_ALIASES = {
    "precision": {"--bf16": "bf16", "--fp16": "fp16"},
    "double_quant": {"--no-double-quant": False},
    "packing": {"--no-packing": False},
    "gradient_checkpointing": {"--no-gradient-checkpointing": False},
    "offload_optimizer": {"--no-offload-optimizer": False},
    "offload_params": {"--no-offload-params": False},
    "resume": {"--no-resume": False},
}

# ms-swift's `--deepspeed` presets: ZeRO stage, optimizer offload, parameter offload.
DEEPSPEED_PRESETS = {
    "zero0": (0, False, False),
    "zero1": (1, False, False),
    "zero2": (2, False, False),
    "zero3": (3, False, False),
    "zero2_offload": (2, True, False),
    "zero3_offload": (3, True, True),
}
# Tuners of other trainers with no counterpart here, and what to use instead.
TUNER_HINTS = {
    "freeze": "training only some layers is not offered; use lora, or full for every weight",
}


def _job_labels(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


def build_spec(
    task: int, flags: Mapping[str, Any], base: trainer_pb2.TrainJobSpec | None = None
) -> trainer_pb2.TrainJobSpec:
    """The spec of a training command without its inputs (model and datasets): a job
    file's spec with the options given on the command line set over it.

    Args:
        task: The `TrainTask` value.
        flags: The options given, by parameter name (the inputs excluded); an enum
            option holds the enum's number.
        base: The spec read from a job file, if any.

    Raises:
        typer.BadParameter: a `--label` or `--deepspeed` value is not understood.
        RefError: `--reference-model` is malformed.
    """
    spec = trainer_pb2.TrainJobSpec()
    if base is not None:
        spec.CopyFrom(base)
    spec.task = task
    if "deepspeed" in flags:  # first, so that --strategy or --zero-stage beside it win
        _apply_deepspeed(spec.distribution, flags["deepspeed"])
    for name, value in flags.items():
        if name == "label":
            spec.labels.update(_job_labels(value))
        elif name != "deepspeed":
            _set_field(spec, FIELDS[name], _CONVERSIONS.get(name, _unchanged)(value))
    if "quantization_bit" in flags and spec.tuner in (
        trainer_pb2.TUNER_UNSPECIFIED,
        trainer_pb2.TUNER_LORA,
    ):
        spec.tuner = trainer_pb2.TUNER_QLORA  # `--quantization-bit 4` on LoRA is QLoRA
    return spec


def _set_field(spec: trainer_pb2.TrainJobSpec, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    message = spec
    for parent in parents:
        message = getattr(message, parent)
    f = message.DESCRIPTOR.fields_by_name[name]
    if f.is_repeated:
        del getattr(message, name)[:]
        getattr(message, name).extend(value)
    elif f.message_type is not None:
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


def _unchanged(value: Any) -> Any:
    return value


def _modules(text: str) -> list[str]:
    """A comma-separated module list; LLaMA-Factory's `all` is our `all-linear`."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    return ["all-linear" if name == "all" else name for name in names]


_CONVERSIONS = {
    "target_modules": _modules,
    "modules_to_save": _modules,
    "reference_model": parse_ref,
}


def _apply_deepspeed(d: trainer_pb2.DistributionConfig, value: str) -> None:
    """`--deepspeed`: a preset name (ms-swift's) or a DeepSpeed JSON file.

    Raises:
        typer.BadParameter: it is neither.
    """
    preset = DEEPSPEED_PRESETS.get(value.strip().lower().replace("-", "_"))
    if preset is not None:
        d.strategy = trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED
        d.zero_stage, d.offload_optimizer, d.offload_params = preset
        return
    path = Path(value)
    if not path.is_file():
        raise typer.BadParameter(
            f"{value!r} is neither a file nor one of {', '.join(DEEPSPEED_PRESETS)}",
            param_hint="--deepspeed",
        )
    d.deepspeed_config_json = path.read_text()


def option_field(name: str) -> FieldDescriptor:
    """The spec field an option sets (`learning_rate` -> `hyper_parameters.learning_rate`).

    Raises:
        KeyError: `name` is not an option that sets a spec field.
    """
    *parents, last = FIELDS[name].split(".")
    message = trainer_pb2.TrainJobSpec.DESCRIPTOR
    for parent in parents:
        message = message.fields_by_name[parent].message_type
    return message.fields_by_name[last]


def option_flag(name: str) -> str:
    """The flag of an option as `--help` shows it (`learning_rate` -> `--lr`)."""
    return OPTION_FLAGS.get(name, "--" + name.replace("_", "-"))


def command_line(command: str, inputs: Mapping[str, str], flags: Mapping[str, Any]) -> str:
    """The `forgeline COMMAND ...` line that runs a job with these inputs and options.

    Args:
        command: `sft`, `pt` or `dpo`.
        inputs: Input options by name (`model`, `dataset`, `eval_dataset`).
        flags: Options by name, as `build_spec` takes them (an enum option holds the
            enum's number).
    """
    words = ["forgeline", command]
    for name, value in inputs.items():
        if value:
            words += [option_flag(name), value]
    for name, value in flags.items():
        if name == "label":
            for item in value:
                words += ["--label", item]
            continue
        f = option_field(name)
        if f.type == FieldDescriptor.TYPE_BOOL:
            off = next((k for k, v in FLAG_ALIASES.get(name, {}).items() if v is False), None)
            words.append(option_flag(name) if value else off or "")
            continue
        if f.enum_type is not None:
            value = label(EnumTypeWrapper(f.enum_type), value).lower().replace("_", "-")
        elif isinstance(value, list):
            value = ",".join(value)
        words += [option_flag(name), str(value)]
    return shlex.join(w for w in words if w)
