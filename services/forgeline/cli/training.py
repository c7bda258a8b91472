"""`forgeline sft|pt|dpo`: training from the command line.

The job comes from the flags, from a job file (`--config job.yaml`, see `jobfile`) with the
flags given overriding it, or both. Familiar flags of Hugging Face `transformers`,
ms-swift and LLaMA-Factory are aliases of ours (`--learning_rate`, `--num_train_epochs`,
`--lora_target`, `--cutoff_len`, `--bf16`, ...; see `ALIASES`). The resulting spec is
checked with the trainer's own checks before anything else happens; `--print-config`
then prints it as a job file and stops.

A local dataset file is checked here first (the same checks the trainer runs, so a bad
file fails before any upload), then uploaded to the registry as a DATASET version
(content-addressed: submitting the same file again moves nothing), and the job is
submitted referencing it. Without `--detach` the command follows the job with a live
progress bar (step, loss, tokens/s, ETA) and exits non-zero unless it succeeds.
"""

import contextlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from forgeline.cli.aliases import AliasedCommand
from forgeline.cli.choices import choice_option
from forgeline.cli.context import console, err_console, registry_client, trainer_client
from forgeline.cli.jobfile import (
    JobFileError,
    dump_job_file,
    load_job_file,
    spec_problems,
)
from forgeline.cli.jobs import TrainerOption, follow
from forgeline.cli.quantize import QuantizerOption, submit_and_follow
from forgeline.client.labels import label
from forgeline.client.refs import RefError, format_ref, parse_ref
from forgeline.trainer.config import fill_defaults
from forgeline.v1 import common_pb2, quantizer_pb2, registry_pb2, trainer_pb2

RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry address [FORGELINE_REGISTRY_ADDRESS].")
]

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


class TrainingCommand(AliasedCommand):
    """`sft`, `pt` and `dpo`: our options, with the familiar spellings as aliases."""

    aliases = ALIASES
    flag_aliases = FLAG_ALIASES


def dataset_model_name(path: Path) -> str:
    """A registry model name for a dataset file: its stem, lower-cased and cleaned."""
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._") or "dataset"
    return name[:128]


def upload_dataset(path: Path, task: str, fmt: str, registry: str | None) -> str:
    """Checks a local dataset file, uploads it as a DATASET version, returns its reference.

    Raises:
        typer.Exit: the file has problems (each printed with its line and field).
    """
    from forgeline.client.transfer import push_file

    try:
        from forgeline.trainer.config import DataFormat, Task
        from forgeline.trainer.data import load_dataset
    except ImportError:  # a client-only install: the trainer checks it on submission
        load_dataset = None
    if load_dataset is not None:
        loaded = load_dataset(path, Task(task), DataFormat(fmt))
        if not loaded.ok:
            err_console.print(f"[red]error:[/] {path} is not a valid {task} dataset")
            for line in loaded.describe_problems():
                err_console.print(f"  {line}")
            raise typer.Exit(2)
    with registry_client(registry) as client:
        version = push_file(
            client,
            path,
            dataset_model_name(path),
            registry_pb2.VERSION_KIND_DATASET,
            reuse_identical=True,
            description=f"uploaded from {path.name}",
        )
    ref = f"{version.model}:{version.number}"
    console.print(f"dataset {path.name} -> {ref}")
    return ref


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


def _run(ctx: typer.Context, task: int, task_name: str, options: dict) -> None:
    """Builds the spec from the job file and the flags given, checks it, then prints it
    (`--print-config`) or submits it.

    Raises:
        typer.Exit: the job file or the spec has problems (exit code 2; they are printed).
        typer.BadParameter: the model or the dataset is given nowhere.
    """
    spellings = {
        p.name: [*p.opts, *ALIASES.get(p.name, ()), *FLAG_ALIASES.get(p.name, {})]
        for p in ctx.command.params
    }
    job = None
    if options["config"] is not None:
        fields = {**FIELDS, **INPUT_FIELDS}
        familiar = {
            s.lstrip("-").replace("-", "_"): fields[name]
            for name, names in spellings.items()
            if name in fields
            for s in names
        }
        try:
            job = load_job_file(options["config"], task, familiar)
        except JobFileError as exc:
            _refuse(f"{options['config']} cannot be used:", exc.problems)
    flags = {name: value for name, value in options.items() if name in FIELDS and value is not None}
    spec = build_spec(task, flags, job.spec if job is not None else None)
    inputs = dict(job.inputs) if job is not None else {}
    inputs.update({f: options[name] for name, f in INPUT_FIELDS.items() if options[name]})
    for name in ("model", "dataset"):
        if INPUT_FIELDS[name] not in inputs:
            raise typer.BadParameter(
                f"missing: give it, or `{INPUT_FIELDS[name]}:` in a job file with --config",
                param_hint=f"--{name}",
            )
    problems = spec_problems(spec, job, {FIELDS[name]: spellings[name][0] for name in flags})
    if problems:
        _refuse("the job cannot run as given:", problems)
    if options["print_config"]:
        sys.stdout.write(dump_job_file(spec, _file_inputs(inputs), _with_defaults(spec, inputs)))
        return
    options.update(
        model=inputs["base_model"],
        dataset=inputs["dataset"],
        eval_dataset=inputs.get("eval_dataset"),
    )
    _submit(task_name, options, spec)


def _refuse(title: str, problems: list[str]) -> None:
    """Prints problems under a title and exits with code 2.

    Raises:
        typer.Exit: always.
    """
    err_console.print(f"[red]error:[/] {title}", soft_wrap=True)
    for line in problems:
        err_console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _file_inputs(inputs: dict[str, str]) -> dict[str, str]:
    """The inputs as a printed job file gives them: local files by absolute path, so the
    file works from any directory."""
    return {k: str(Path(v).resolve()) if Path(v).is_file() else v for k, v in inputs.items()}


def _with_defaults(spec: trainer_pb2.TrainJobSpec, inputs: dict[str, str]):
    """The spec with the trainer's defaults filled in, as far as they are known here."""
    full = trainer_pb2.TrainJobSpec()
    full.CopyFrom(spec)
    with contextlib.suppress(RefError):  # not a reference yet: no default output name
        full.base_model.CopyFrom(parse_ref(inputs["base_model"]))
    return fill_defaults(full)


def _resolve_dataset(value: str, task: str, fmt: str, registry: str | None) -> str:
    path = Path(value)
    if path.exists():
        return upload_dataset(path, task, fmt, registry)
    parse_ref(value)  # a registry reference; RefError explains a typo'd path too
    return value


def _base_model(value: str, registry: str | None) -> str:
    """The `--model` reference; a Hub id, ModelScope id or local model is imported on first use.

    A registry reference is kept as it is. A Hub or ModelScope id imported before resolves
    to that import; a local model is imported again (identical content reuses its version).

    Raises:
        InvalidArgument, FailedPrecondition, Unavailable, NotFound: the import failed (see
            `forgeline.common.intake.import_model`); nothing was registered.
    """
    from forgeline.cli.context import transfer_progress
    from forgeline.client.exceptions import NotFound
    from forgeline.client.refs import RefError, pinned
    from forgeline.common import intake

    if not intake.looks_importable(value):
        return value
    with registry_client(registry) as client:
        try:
            client.get_version(value)
            return value  # a registry model that is also the name of a local path
        except (RefError, NotFound):
            pass
        version = intake.find_imported(client, value)
        if version is None:
            console.print(f"importing {value} as {intake.default_name(value)} (first use)")
            with transfer_progress() as progress:
                version = intake.import_model(client, value, progress=progress)
        else:
            console.print(f"{value} was imported as {pinned(version)}")
    return pinned(version)


def _stacked_base(ref: str, registry: str | None, quantizer: str | None) -> str:
    """Merges the ADAPTER `ref` into its base (a quantizer MERGE job); returns the MERGED
    version a new adapter is then trained on.

    Raises:
        typer.BadParameter: `ref` is not an ADAPTER.
        typer.Exit: the merge failed (its job's error is printed).
    """
    with registry_client(registry) as client:
        version = client.get_version(ref)
    if version.kind != registry_pb2.VERSION_KIND_ADAPTER:
        kind = label(registry_pb2.VersionKind, version.kind)
        raise typer.BadParameter(
            f"{ref} is a {kind} version; --stack trains a new adapter on a base merged with "
            "an ADAPTER",
            param_hint="--stack",
        )
    console.print(f"merging {ref} into its base, to train a new adapter on top")
    spec = quantizer_pb2.QuantizeJobSpec(
        source=parse_ref(ref), operation=quantizer_pb2.QUANTIZE_OPERATION_MERGE
    )
    return format_ref(submit_and_follow(spec, quantizer).outputs[0])


def _submit(task_name: str, options: dict, spec: trainer_pb2.TrainJobSpec) -> None:
    options["model"] = _base_model(options["model"], options["registry"])
    if options["stack"]:
        options["model"] = _stacked_base(
            options["model"], options["registry"], options["quantizer"]
        )
    fmt_value = spec.dataset_format or trainer_pb2.DATASET_FORMAT_AUTO
    fmt = label(trainer_pb2.DatasetFormat, fmt_value).lower()
    options["dataset_ref"] = _resolve_dataset(
        options["dataset"], task_name, fmt, options["registry"]
    )
    if options["eval_dataset"]:
        options["eval_dataset_ref"] = _resolve_dataset(
            options["eval_dataset"], task_name, fmt, options["registry"]
        )
    spec.base_model.CopyFrom(parse_ref(options["model"]))
    spec.dataset.CopyFrom(parse_ref(options["dataset_ref"]))
    if options["eval_dataset"]:
        spec.eval_dataset.CopyFrom(parse_ref(options["eval_dataset_ref"]))
    with trainer_client(options["trainer"]) as trainer:
        if options["plan"]:
            print_plan(trainer.plan(spec))
            return
        job = trainer.submit(spec)
        console.print(f"submitted {job.id}")
        if options["detach"]:
            return
        final = follow(trainer, job.id, reattach=f"forgeline jobs follow {job.id}")
    if final.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise typer.Exit(1)


def print_plan(plan: trainer_pb2.PlanTrainJobResponse) -> None:
    """Prints a plan: problems, or the run's size and memory estimate.

    Raises:
        typer.Exit: the spec cannot run (exit code 2; the problems are printed).
    """
    if plan.problems:
        err_console.print("[red]the spec cannot run:[/]")
        for p in plan.problems:
            err_console.print(f"  {p.field}: {p.description}")
        raise typer.Exit(2)
    gib = 1024**3
    m = plan.memory_per_worker
    strategy = label(trainer_pb2.DistributionStrategy, plan.strategy)
    if plan.HasField("zero_stage"):
        strategy += f" ZeRO-{plan.zero_stage}"
    table = Table("", "")
    table.add_row("strategy", strategy)
    table.add_row("examples", str(plan.num_examples))
    table.add_row("steps", str(plan.total_steps))
    table.add_row("tokens", f"{plan.total_tokens:,}")
    table.add_row(
        "memory per worker",
        f"{m.total_bytes / gib:.2f} GiB (weights {m.weights_bytes / gib:.2f}, gradients "
        f"{m.gradients_bytes / gib:.2f}, optimizer {m.optimizer_bytes / gib:.2f}, "
        f"activations {m.activations_bytes / gib:.2f})",
    )
    console.print(table)
    for warning in plan.warnings:
        console.print(f"[yellow]note:[/] {warning}")


# -- the three training commands share their options -------------------------------------------


def _training_command(task: int, task_name: str, help_text: str, dpo: bool = False):
    def command(
        ctx: typer.Context,
        model: Annotated[
            str | None, typer.Option(help="Base model reference, e.g. smollm2-135m-instruct.")
        ] = None,
        dataset: Annotated[
            str | None,
            typer.Option(help="Local JSON/JSONL/CSV/Parquet file or a DATASET reference."),
        ] = None,
        output: Annotated[
            str | None, typer.Option(help="Registry name of the result \\[<model>-<task>].")
        ] = None,
        eval_dataset: Annotated[
            str | None, typer.Option(help="Held-out file or DATASET reference.")
        ] = None,
        dataset_format: Annotated[
            int | None, choice_option(trainer_pb2.DatasetFormat, help="Record layout \\[auto].")
        ] = None,
        tuner: Annotated[
            int | None,
            choice_option(trainer_pb2.Tuner, help="What is trained \\[lora].", hints=TUNER_HINTS),
        ] = None,
        lora_rank: Annotated[int | None, typer.Option(min=0, help="Adapter rank [8].")] = None,
        lora_alpha: Annotated[
            int | None, typer.Option(min=0, help="Adapter alpha [2 x rank].")
        ] = None,
        lora_dropout: Annotated[float | None, typer.Option(help="Adapter dropout.")] = None,
        target_modules: Annotated[
            str | None,
            typer.Option(help="Comma-separated modules, or all-linear \\[per architecture]."),
        ] = None,
        modules_to_save: Annotated[
            str | None, typer.Option(help="Comma-separated modules trained in full.")
        ] = None,
        quantization_bit: Annotated[
            int | None, typer.Option(min=0, help="4 or 8: QLoRA on a quantized base.")
        ] = None,
        lora_dtype: Annotated[
            int | None, choice_option(trainer_pb2.QuantType, help="Quantized base type.")
        ] = None,
        double_quant: Annotated[
            bool | None,
            typer.Option("--double-quant", help="Quantize the quantization scales too."),
        ] = None,
        epochs: Annotated[int | None, typer.Option(min=0, help="Passes over the data [1].")] = None,
        max_steps: Annotated[
            int | None, typer.Option(min=0, help="Stop after this many optimizer steps.")
        ] = None,
        learning_rate: Annotated[
            float | None,
            typer.Option("--lr", help="Peak learning rate [2e-4 adapters, 2e-5 full]."),
        ] = None,
        lr_scheduler: Annotated[
            int | None,
            choice_option(trainer_pb2.LrScheduler, help="Schedule after warm-up \\[linear]."),
        ] = None,
        warmup_ratio: Annotated[
            float | None, typer.Option(help="Fraction of steps warming up.")
        ] = None,
        warmup_steps: Annotated[
            int | None, typer.Option(min=0, help="Steps warming up (wins over the ratio).")
        ] = None,
        weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay.")] = None,
        batch_size: Annotated[
            int | None, typer.Option(min=0, help="Sequences per worker per micro-batch [1].")
        ] = None,
        grad_accum: Annotated[
            int | None, typer.Option(min=0, help="Micro-batches per optimizer step [1].")
        ] = None,
        max_seq_len: Annotated[
            int | None, typer.Option(min=0, help="Tokens per sequence \\[min(context, 2048)].")
        ] = None,
        packing: Annotated[
            bool | None,
            typer.Option("--packing", help="Pack short sequences into full rows."),
        ] = None,
        seed: Annotated[int | None, typer.Option(min=0, help="Random seed [42].")] = None,
        precision: Annotated[
            int | None,
            choice_option(
                trainer_pb2.Precision, help="Training precision \\[bf16 on GPU, fp32 on CPU]."
            ),
        ] = None,
        gradient_checkpointing: Annotated[
            bool | None,
            typer.Option(
                "--gradient-checkpointing",
                help="Recompute activations to save memory.",
            ),
        ] = None,
        optimizer: Annotated[
            int | None, choice_option(trainer_pb2.Optimizer, help="Optimizer \\[adamw].")
        ] = None,
        max_grad_norm: Annotated[
            float | None, typer.Option(help="Gradient clipping norm [1.0; 0 disables].")
        ] = None,
        workers: Annotated[int | None, typer.Option(min=0, help="Ray Train workers [1].")] = None,
        cpus_per_worker: Annotated[
            float | None, typer.Option(help="CPUs per worker \\[an equal share].")
        ] = None,
        gpus_per_worker: Annotated[
            float | None, typer.Option(help="GPUs per worker [0: CPU].")
        ] = None,
        strategy: Annotated[
            int | None,
            choice_option(
                trainer_pb2.DistributionStrategy, help="How workers share the job \\[auto]."
            ),
        ] = None,
        zero_stage: Annotated[
            int | None, typer.Option(min=0, help="DeepSpeed ZeRO stage 0-3 [2].")
        ] = None,
        offload_optimizer: Annotated[
            bool | None,
            typer.Option(
                "--offload-optimizer",
                help="DeepSpeed: optimizer state in host memory.",
            ),
        ] = None,
        offload_params: Annotated[
            bool | None,
            typer.Option(
                "--offload-params",
                help="DeepSpeed ZeRO-3: parameters in host memory.",
            ),
        ] = None,
        deepspeed: Annotated[
            str | None,
            typer.Option(
                help="DeepSpeed JSON file merged over the generated config, or a preset: "
                f"{', '.join(DEEPSPEED_PRESETS)}."
            ),
        ] = None,
        save_every: Annotated[
            int | None, typer.Option(min=0, help="Checkpoint every N steps \\[each epoch].")
        ] = None,
        keep_last: Annotated[
            int | None, typer.Option(min=0, help="Keep the newest N checkpoints \\[all].")
        ] = None,
        resume: Annotated[
            bool | None,
            typer.Option("--resume", help="Resume from a checkpoint after a restart \\[yes]."),
        ] = None,
        label: Annotated[
            list[str] | None, typer.Option(help="KEY=VALUE label (repeatable).")
        ] = None,
        beta: Annotated[float | None, typer.Option(help="DPO beta [0.1].", hidden=not dpo)] = None,
        loss_type: Annotated[
            int | None,
            choice_option(trainer_pb2.DpoLossType, help="DPO loss \\[sigmoid].", hidden=not dpo),
        ] = None,
        reference_model: Annotated[
            str | None, typer.Option(help="DPO reference \\[the base].", hidden=not dpo)
        ] = None,
        label_smoothing: Annotated[
            float | None, typer.Option(help="DPO label smoothing.", hidden=not dpo)
        ] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                exists=True,
                dir_okay=False,
                help="Job file (YAML or JSON) to start from; flags given override it.",
            ),
        ] = None,
        print_config: Annotated[
            bool,
            typer.Option(
                "--print-config",
                help="Print the job as a job file (YAML) for --config; run nothing.",
            ),
        ] = False,
        plan: Annotated[
            bool, typer.Option("--plan", help="Only check the spec and show the plan.")
        ] = False,
        detach: Annotated[
            bool, typer.Option("--detach", help="Submit and return without following.")
        ] = False,
        stack: Annotated[
            bool,
            typer.Option(
                "--stack",
                help="With an ADAPTER as --model: merge it into its base and train a new "
                "adapter on top (default: continue training that adapter).",
            ),
        ] = False,
        trainer: TrainerOption = None,
        registry: RegistryOption = None,
        quantizer: QuantizerOption = None,
    ) -> None:
        # locals() also holds the closure's free variables; keep the options only.
        options = {k: v for k, v in locals().items() if k not in ("task", "task_name", "ctx")}
        _run(ctx, task, task_name, options)

    command.__doc__ = help_text
    return command


def register(app: typer.Typer) -> None:
    """Adds `sft`, `pt` and `dpo` to the `forgeline` app."""
    app.command("sft", cls=TrainingCommand)(
        _training_command(
            trainer_pb2.TRAIN_TASK_SFT,
            "sft",
            "Supervised fine-tuning on conversations (loss on the answers).",
        )
    )
    app.command("pt", cls=TrainingCommand)(
        _training_command(
            trainer_pb2.TRAIN_TASK_PRETRAIN,
            "pretrain",
            "Continued pre-training on plain text (loss on every token).",
        )
    )
    app.command("dpo", cls=TrainingCommand)(
        _training_command(
            trainer_pb2.TRAIN_TASK_DPO,
            "dpo",
            "Direct preference optimization on chosen/rejected pairs.",
            dpo=True,
        )
    )
