"""`forgeline sft|pt|dpo`: training from the command line.

A local dataset file is checked here first (the same checks the trainer runs, so a bad
file fails before any upload), then uploaded to the registry as a DATASET version
(content-addressed: submitting the same file again moves nothing), and the job is
submitted referencing it. Without `--detach` the command follows the job with a live
progress bar (step, loss, tokens/s, ETA) and exits non-zero unless it succeeds.
"""

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from forgeline.cli.choices import choices_help, parse_choice
from forgeline.cli.context import console, err_console, registry_client, trainer_client
from forgeline.cli.jobs import TrainerOption, follow
from forgeline.client.labels import label
from forgeline.client.refs import parse_ref
from forgeline.v1 import common_pb2, registry_pb2, trainer_pb2

RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry address [FORGELINE_REGISTRY_ADDRESS].")
]


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


def build_spec(task: int, **o) -> trainer_pb2.TrainJobSpec:
    """Builds a spec from the command-line options (zero values keep the service defaults).

    Args:
        task: The `TrainTask` value.
        **o: The training command's options by parameter name, plus `dataset_ref` (and
            `eval_dataset_ref`): the registry references the datasets resolved to.

    Raises:
        typer.BadParameter: an enum option or a `--label` is not understood.
        RefError: a model or dataset reference is malformed.
    """
    spec = trainer_pb2.TrainJobSpec(task=task, base_model=parse_ref(o["model"]))
    spec.dataset.CopyFrom(parse_ref(o["dataset_ref"]))
    if o.get("eval_dataset_ref"):
        spec.eval_dataset.CopyFrom(parse_ref(o["eval_dataset_ref"]))
    spec.dataset_format = parse_choice(
        trainer_pb2.DatasetFormat, o["dataset_format"], "--dataset-format"
    )
    spec.output_name = o["output"] or ""
    tuner = o["tuner"]
    if o["quantization_bit"]:
        tuner = "qlora"  # `--quantization-bit 4 --lora-dtype nf4` is QLoRA
    spec.tuner = parse_choice(trainer_pb2.Tuner, tuner, "--tuner")
    spec.lora.rank = o["lora_rank"]
    spec.lora.alpha = o["lora_alpha"]
    spec.lora.dropout = o["lora_dropout"]
    spec.lora.target_modules.extend(t for t in (o["target_modules"] or "").split(",") if t)
    spec.lora.modules_to_save.extend(t for t in (o["modules_to_save"] or "").split(",") if t)
    if o["quantization_bit"]:
        spec.quantization.bits = o["quantization_bit"]
    if o["lora_dtype"]:
        spec.quantization.quant_type = parse_choice(
            trainer_pb2.QuantType, o["lora_dtype"], "--lora-dtype"
        )
    spec.quantization.double_quant = o["double_quant"]
    h = spec.hyper_parameters
    h.epochs = o["epochs"]
    h.max_steps = o["max_steps"]
    h.learning_rate = o["learning_rate"]
    if o["lr_scheduler"]:
        h.lr_scheduler = parse_choice(trainer_pb2.LrScheduler, o["lr_scheduler"], "--lr-scheduler")
    h.warmup_ratio = o["warmup_ratio"]
    h.warmup_steps = o["warmup_steps"]
    h.weight_decay = o["weight_decay"]
    h.per_device_batch_size = o["batch_size"]
    h.gradient_accumulation_steps = o["grad_accum"]
    h.max_seq_length = o["max_seq_len"]
    h.packing = o["packing"]
    if o["seed"] is not None:
        h.seed = o["seed"]
    if o["precision"]:
        h.precision = parse_choice(trainer_pb2.Precision, o["precision"], "--precision")
    h.gradient_checkpointing = o["gradient_checkpointing"]
    if o["optimizer"]:
        h.optimizer = parse_choice(trainer_pb2.Optimizer, o["optimizer"], "--optimizer")
    if o["max_grad_norm"] is not None:
        h.max_grad_norm = o["max_grad_norm"]
    d = spec.distribution
    if o["strategy"]:
        d.strategy = parse_choice(trainer_pb2.DistributionStrategy, o["strategy"], "--strategy")
    if o["zero_stage"] is not None:
        d.zero_stage = o["zero_stage"]
    d.offload_optimizer = o["offload_optimizer"]
    d.offload_params = o["offload_params"]
    if o["deepspeed"]:
        d.deepspeed_config_json = Path(o["deepspeed"]).read_text()
    d.resources.num_workers = o["workers"]
    d.resources.cpus_per_worker = o["cpus_per_worker"]
    d.resources.gpus_per_worker = o["gpus_per_worker"]
    c = spec.checkpointing
    c.save_every_steps = o["save_every"]
    c.keep_last = o["keep_last"]
    if o["no_resume"]:
        c.resume_enabled = False
    for key, value in _job_labels(o["label"]).items():
        spec.labels[key] = value
    if task == trainer_pb2.TRAIN_TASK_DPO:
        spec.dpo.beta = o["beta"]
        spec.dpo.label_smoothing = o["label_smoothing"]
        if o["loss_type"]:
            spec.dpo.loss_type = parse_choice(
                trainer_pb2.DpoLossType, o["loss_type"], "--loss-type"
            )
        if o["reference_model"]:
            spec.dpo.reference_model.CopyFrom(parse_ref(o["reference_model"]))
    return spec


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


def _submit(task: int, task_name: str, options: dict) -> None:
    options["model"] = _base_model(options["model"], options["registry"])
    fmt_value = parse_choice(
        trainer_pb2.DatasetFormat, options["dataset_format"], "--dataset-format"
    )
    fmt = label(trainer_pb2.DatasetFormat, fmt_value).lower()
    options["dataset_ref"] = _resolve_dataset(
        options["dataset"], task_name, fmt, options["registry"]
    )
    if options["eval_dataset"]:
        options["eval_dataset_ref"] = _resolve_dataset(
            options["eval_dataset"], task_name, fmt, options["registry"]
        )
    spec = build_spec(task, **options)
    with trainer_client(options["trainer"]) as trainer:
        if options["plan"]:
            print_plan(trainer.plan(spec))
            return
        job = trainer.submit(spec)
        console.print(f"submitted {job.id}")
        if options["detach"]:
            return
        final = follow(trainer, job.id)
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
        model: Annotated[
            str, typer.Option(help="Base model reference, e.g. smollm2-135m-instruct.")
        ],
        dataset: Annotated[
            str, typer.Option(help="Local JSON/JSONL/CSV/Parquet file or a DATASET reference.")
        ],
        output: Annotated[
            str | None, typer.Option(help="Registry name of the result [<model>-<task>].")
        ] = None,
        eval_dataset: Annotated[
            str | None, typer.Option(help="Held-out file or DATASET reference.")
        ] = None,
        dataset_format: Annotated[
            str, typer.Option(help=f"{choices_help(trainer_pb2.DatasetFormat)}.")
        ] = "auto",
        tuner: Annotated[str, typer.Option(help=f"{choices_help(trainer_pb2.Tuner)}.")] = "lora",
        lora_rank: Annotated[int, typer.Option(help="Adapter rank [8].")] = 0,
        lora_alpha: Annotated[int, typer.Option(help="Adapter alpha [2 x rank].")] = 0,
        lora_dropout: Annotated[float, typer.Option(help="Adapter dropout.")] = 0.0,
        target_modules: Annotated[
            str | None,
            typer.Option(help="Comma-separated modules, or all-linear [per architecture]."),
        ] = None,
        modules_to_save: Annotated[
            str | None, typer.Option(help="Comma-separated modules trained in full.")
        ] = None,
        quantization_bit: Annotated[
            int, typer.Option(help="4 or 8: QLoRA on a quantized base.")
        ] = 0,
        lora_dtype: Annotated[
            str | None,
            typer.Option(help=f"Quantized base type: {choices_help(trainer_pb2.QuantType)}."),
        ] = None,
        double_quant: Annotated[
            bool, typer.Option(help="Quantize the quantization scales too.")
        ] = False,
        epochs: Annotated[int, typer.Option(help="Passes over the data [1].")] = 0,
        max_steps: Annotated[int, typer.Option(help="Stop after this many optimizer steps.")] = 0,
        learning_rate: Annotated[
            float, typer.Option("--lr", help="Peak learning rate [2e-4 adapters, 2e-5 full].")
        ] = 0.0,
        lr_scheduler: Annotated[
            str | None, typer.Option(help=f"{choices_help(trainer_pb2.LrScheduler)}.")
        ] = None,
        warmup_ratio: Annotated[float, typer.Option(help="Fraction of steps warming up.")] = 0.0,
        warmup_steps: Annotated[
            int, typer.Option(help="Steps warming up (wins over the ratio).")
        ] = 0,
        weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
        batch_size: Annotated[
            int, typer.Option(help="Sequences per worker per micro-batch [1].")
        ] = 0,
        grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step [1].")] = 0,
        max_seq_len: Annotated[
            int, typer.Option(help="Tokens per sequence [min(context, 2048)].")
        ] = 0,
        packing: Annotated[bool, typer.Option(help="Pack short sequences into full rows.")] = False,
        seed: Annotated[int | None, typer.Option(help="Random seed [42].")] = None,
        precision: Annotated[
            str | None,
            typer.Option(help=f"{choices_help(trainer_pb2.Precision)} [bf16 on GPU, fp32 on CPU]."),
        ] = None,
        gradient_checkpointing: Annotated[
            bool, typer.Option(help="Recompute activations to save memory.")
        ] = False,
        optimizer: Annotated[
            str | None, typer.Option(help=f"{choices_help(trainer_pb2.Optimizer)}.")
        ] = None,
        max_grad_norm: Annotated[
            float | None, typer.Option(help="Gradient clipping norm [1.0; 0 disables].")
        ] = None,
        workers: Annotated[int, typer.Option(help="Ray Train workers [1].")] = 0,
        cpus_per_worker: Annotated[
            float, typer.Option(help="CPUs per worker [an equal share].")
        ] = 0.0,
        gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker [0: CPU].")] = 0.0,
        strategy: Annotated[
            str | None,
            typer.Option(help=f"{choices_help(trainer_pb2.DistributionStrategy)} [auto]."),
        ] = None,
        zero_stage: Annotated[
            int | None, typer.Option(help="DeepSpeed ZeRO stage 0-3 [2].")
        ] = None,
        offload_optimizer: Annotated[
            bool, typer.Option(help="DeepSpeed: optimizer state in host memory.")
        ] = False,
        offload_params: Annotated[
            bool, typer.Option(help="DeepSpeed ZeRO-3: parameters in host memory.")
        ] = False,
        deepspeed: Annotated[
            str | None, typer.Option(help="DeepSpeed JSON file merged over the generated config.")
        ] = None,
        save_every: Annotated[int, typer.Option(help="Checkpoint every N steps [each epoch].")] = 0,
        keep_last: Annotated[int, typer.Option(help="Keep the newest N checkpoints [all].")] = 0,
        no_resume: Annotated[
            bool, typer.Option(help="Fail instead of resuming after a restart.")
        ] = False,
        label: Annotated[
            list[str] | None, typer.Option(help="KEY=VALUE label (repeatable).")
        ] = None,
        beta: Annotated[float, typer.Option(help="DPO beta [0.1].", hidden=not dpo)] = 0.0,
        loss_type: Annotated[
            str | None,
            typer.Option(
                help=f"DPO loss: {choices_help(trainer_pb2.DpoLossType)}.", hidden=not dpo
            ),
        ] = None,
        reference_model: Annotated[
            str | None, typer.Option(help="DPO reference [the base].", hidden=not dpo)
        ] = None,
        label_smoothing: Annotated[
            float, typer.Option(help="DPO label smoothing.", hidden=not dpo)
        ] = 0.0,
        plan: Annotated[bool, typer.Option(help="Only check the spec and show the plan.")] = False,
        detach: Annotated[bool, typer.Option(help="Submit and return without following.")] = False,
        trainer: TrainerOption = None,
        registry: RegistryOption = None,
    ) -> None:
        # locals() also holds the closure's free variables; keep the options only.
        options = {k: v for k, v in locals().items() if k not in ("task", "task_name", "dpo")}
        options["label"] = options["label"] or []
        _submit(task, task_name, options)

    command.__doc__ = help_text
    return command


def register(app: typer.Typer) -> None:
    """Adds `sft`, `pt` and `dpo` to the `forgeline` app."""
    app.command("sft")(
        _training_command(
            trainer_pb2.TRAIN_TASK_SFT,
            "sft",
            "Supervised fine-tuning on conversations (loss on the answers).",
        )
    )
    app.command("pt")(
        _training_command(
            trainer_pb2.TRAIN_TASK_PRETRAIN,
            "pretrain",
            "Continued pre-training on plain text (loss on every token).",
        )
    )
    app.command("dpo")(
        _training_command(
            trainer_pb2.TRAIN_TASK_DPO,
            "dpo",
            "Direct preference optimization on chosen/rejected pairs.",
            dpo=True,
        )
    )
