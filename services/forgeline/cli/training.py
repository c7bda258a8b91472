"""`forgeline sft|pt|dpo` and `forgeline jobs ...`: training from the command line.

A local dataset file is checked here first (the same checks the trainer runs, so a bad
file fails before any upload), then uploaded to the registry as a DATASET version
(content-addressed: submitting the same file again moves nothing), and the job is
submitted referencing it. Without `--detach` the command follows the job with a live
progress bar (step, loss, tokens/s, ETA) and exits non-zero unless it succeeds.
"""

import json
import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from forgeline.cli.context import address_of, client_options, console, err_console, registry_client
from forgeline.client.jobs import TrainerClient
from forgeline.client.refs import format_ref, parse_ref
from forgeline.common.settings import ServiceName
from forgeline.v1 import common_pb2, registry_pb2, trainer_pb2

jobs_app = typer.Typer(help="Training jobs: list, inspect, follow, cancel.", no_args_is_help=True)

TrainerOption = Annotated[
    str | None, typer.Option("--trainer", help="Trainer address [FORGELINE_TRAINER_ADDRESS].")
]
RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry address [FORGELINE_REGISTRY_ADDRESS].")
]


def _enum(pb_enum, prefix: str, value: str, flag: str) -> int:
    names = {n.removeprefix(prefix).lower().replace("_", "-"): v for n, v in pb_enum.items() if v}
    key = value.lower().replace("_", "-")
    if key not in names:
        raise typer.BadParameter(f"use one of {', '.join(names)}", param_hint=flag)
    return names[key]


def _choices(pb_enum, prefix: str) -> str:
    return ", ".join(
        n.removeprefix(prefix).lower().replace("_", "-") for n, v in pb_enum.items() if v
    )


def trainer_client(address: str | None = None) -> TrainerClient:
    """A trainer client for the configured (or given) address."""
    return TrainerClient(address_of(ServiceName.TRAINER, address), client_options())


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


def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


def build_spec(task: int, **o) -> trainer_pb2.TrainJobSpec:
    """Builds a spec from the command-line options (zero values keep the service defaults)."""
    spec = trainer_pb2.TrainJobSpec(task=task, base_model=parse_ref(o["model"]))
    spec.dataset.CopyFrom(parse_ref(o["dataset_ref"]))
    if o.get("eval_dataset_ref"):
        spec.eval_dataset.CopyFrom(parse_ref(o["eval_dataset_ref"]))
    spec.dataset_format = _enum(
        trainer_pb2.DatasetFormat, "DATASET_FORMAT_", o["dataset_format"], "--dataset-format"
    )
    spec.output_name = o["output"] or ""
    tuner = o["tuner"]
    if o["quantization_bit"]:
        tuner = "qlora"  # `--quantization-bit 4 --lora-dtype nf4` is QLoRA
    spec.tuner = _enum(trainer_pb2.Tuner, "TUNER_", tuner, "--tuner")
    spec.lora.rank = o["lora_rank"]
    spec.lora.alpha = o["lora_alpha"]
    spec.lora.dropout = o["lora_dropout"]
    spec.lora.target_modules.extend(t for t in (o["target_modules"] or "").split(",") if t)
    spec.lora.modules_to_save.extend(t for t in (o["modules_to_save"] or "").split(",") if t)
    if o["quantization_bit"]:
        spec.quantization.bits = o["quantization_bit"]
    if o["lora_dtype"]:
        spec.quantization.quant_type = _enum(
            trainer_pb2.QuantType, "QUANT_TYPE_", o["lora_dtype"], "--lora-dtype"
        )
    spec.quantization.double_quant = o["double_quant"]
    h = spec.hyper_parameters
    h.epochs = o["epochs"]
    h.max_steps = o["max_steps"]
    h.learning_rate = o["learning_rate"]
    if o["lr_scheduler"]:
        h.lr_scheduler = _enum(
            trainer_pb2.LrScheduler, "LR_SCHEDULER_", o["lr_scheduler"], "--lr-scheduler"
        )
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
        h.precision = _enum(trainer_pb2.Precision, "PRECISION_", o["precision"], "--precision")
    h.gradient_checkpointing = o["gradient_checkpointing"]
    if o["optimizer"]:
        h.optimizer = _enum(trainer_pb2.Optimizer, "OPTIMIZER_", o["optimizer"], "--optimizer")
    if o["max_grad_norm"] is not None:
        h.max_grad_norm = o["max_grad_norm"]
    d = spec.distribution
    if o["strategy"]:
        d.strategy = _enum(
            trainer_pb2.DistributionStrategy, "DISTRIBUTION_STRATEGY_", o["strategy"], "--strategy"
        )
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
    for key, value in _labels(o["label"]).items():
        spec.labels[key] = value
    if task == trainer_pb2.TRAIN_TASK_DPO:
        spec.dpo.beta = o["beta"]
        spec.dpo.label_smoothing = o["label_smoothing"]
        if o["loss_type"]:
            spec.dpo.loss_type = _enum(
                trainer_pb2.DpoLossType, "DPO_LOSS_TYPE_", o["loss_type"], "--loss-type"
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


def _submit(task: int, task_name: str, options: dict) -> None:
    fmt = options["dataset_format"].lower().replace("-", "_")
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
    """Prints a plan: problems, or the run's size and memory estimate."""
    if plan.problems:
        err_console.print("[red]the spec cannot run:[/]")
        for p in plan.problems:
            err_console.print(f"  {p.field}: {p.description}")
        raise typer.Exit(2)
    gib = 1024**3
    m = plan.memory_per_worker
    strategy = trainer_pb2.DistributionStrategy.Name(plan.strategy).removeprefix(
        "DISTRIBUTION_STRATEGY_"
    )
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


def follow(trainer: TrainerClient, job_id: str, after_seq: int = 0) -> common_pb2.Job:
    """Follows a job with a progress bar (step, loss, tokens/s, ETA); returns it when done."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[steps]}"),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        bar = progress.add_task(job_id, total=None, stats="", steps="")
        stats: dict[str, float] = {}
        for event in trainer.watch(job_id, after_seq):
            kind = event.WhichOneof("payload")
            if kind == "progress":
                total = event.progress.total_steps or None
                steps = f"step {event.progress.step}/{total or '?'}"
                progress.update(bar, completed=event.progress.step, total=total, steps=steps)
            elif kind == "metrics":
                stats.update(event.metrics.values)
                shown = []
                if "loss" in stats:
                    shown.append(f"loss {stats['loss']:.4f}")
                if "rewards/margins" in stats:
                    shown.append(f"margin {stats['rewards/margins']:.3f}")
                if stats.get("tokens_per_second"):
                    shown.append(f"{stats['tokens_per_second']:.0f} tok/s")
                progress.update(bar, stats="  ".join(shown))
            elif kind == "log":
                progress.console.print(f"[dim]{event.log.message}[/]")
            elif kind == "state":
                name = common_pb2.JobState.Name(event.state.state).removeprefix("JOB_STATE_")
                progress.update(bar, description=f"{job_id} {name.lower()}")
    job = trainer.get(job_id)[0]
    _print_outcome(job)
    return job


def _print_outcome(job: common_pb2.Job) -> None:
    state = common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")
    if job.state == common_pb2.JOB_STATE_SUCCEEDED:
        outputs = ", ".join(format_ref(o) for o in job.outputs)
        console.print(f"[green]{job.id} succeeded[/]: registered {outputs}")
    else:
        err_console.print(f"[red]{job.id} {state.lower()}[/]: {job.error}")


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
            str, typer.Option(help=f"{_choices(trainer_pb2.DatasetFormat, 'DATASET_FORMAT_')}.")
        ] = "auto",
        tuner: Annotated[str, typer.Option(help="lora, qlora, dora or full.")] = "lora",
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
            str | None, typer.Option(help="Quantized base type: nf4, fp4, int8.")
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
            str | None, typer.Option(help=f"{_choices(trainer_pb2.LrScheduler, 'LR_SCHEDULER_')}.")
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
            str | None, typer.Option(help="fp32, bf16 or fp16 [bf16 on GPU, fp32 on CPU].")
        ] = None,
        gradient_checkpointing: Annotated[
            bool, typer.Option(help="Recompute activations to save memory.")
        ] = False,
        optimizer: Annotated[
            str | None, typer.Option(help=f"{_choices(trainer_pb2.Optimizer, 'OPTIMIZER_')}.")
        ] = None,
        max_grad_norm: Annotated[
            float | None, typer.Option(help="Gradient clipping norm [1.0; 0 disables].")
        ] = None,
        workers: Annotated[int, typer.Option(help="Ray Train workers [1].")] = 0,
        cpus_per_worker: Annotated[
            float, typer.Option(help="CPUs per worker [an equal share].")
        ] = 0.0,
        gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker [0: CPU].")] = 0.0,
        strategy: Annotated[str | None, typer.Option(help="auto, none, ddp, deepspeed.")] = None,
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
            str | None, typer.Option(help="DPO loss: sigmoid, hinge, ipo, robust.", hidden=not dpo)
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
    """Adds `sft`, `pt`, `dpo` and `jobs` to the `forgeline` app."""
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
    app.add_typer(jobs_app, name="jobs")


# -- jobs -------------------------------------------------------------------------------------


def _state(job: common_pb2.Job) -> str:
    return common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


@jobs_app.command("list")
def list_jobs(
    state: Annotated[
        list[str] | None, typer.Option(help="Only jobs in this state (repeatable).")
    ] = None,
    trainer: TrainerOption = None,
) -> None:
    """List training jobs, newest first."""
    states = [_enum(common_pb2.JobState, "JOB_STATE_", s, "--state") for s in state or []]
    table = Table("job", "state", "progress", "loss", "outputs", "created")
    with trainer_client(trainer) as client:
        for job in client.list(states=states):
            loss = job.metrics.get("loss")
            table.add_row(
                job.id,
                _state(job),
                f"{job.progress:.0%}",
                f"{loss:.4f}" if loss is not None else "",
                ", ".join(format_ref(o) for o in job.outputs),
                job.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
            )
    console.print(table)


@jobs_app.command("show")
def show_job(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    trainer: TrainerOption = None,
) -> None:
    """Show a job: state, metrics, outputs and its spec."""
    from google.protobuf import json_format

    with trainer_client(trainer) as client:
        job, spec = client.get(job_id)
    console.print(f"[bold]{job.id}[/] {_state(job)} ({job.progress:.0%}, attempt {job.attempt})")
    if job.error:
        console.print(f"error: {job.error}")
    if job.outputs:
        console.print("outputs: " + ", ".join(format_ref(o) for o in job.outputs))
    for key in sorted(job.metrics):
        console.print(f"  {key}: {job.metrics[key]:.6g}")
    console.print_json(json.dumps(json_format.MessageToDict(spec)))


@jobs_app.command("logs")
def job_logs(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following until the job ends.")
    ] = False,
    trainer: TrainerOption = None,
) -> None:
    """Print a job's log lines (and its state changes); `-f` follows live."""
    with trainer_client(trainer) as client:
        if not follow_:
            job = client.get(job_id)[0]
            events = client.watch(job_id) if job.state in _TERMINAL else _replay(client, job)
        else:
            events = client.watch(job_id)
        for event in events:
            _print_event(event)


_TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


def _replay(client: TrainerClient, job: common_pb2.Job):
    """The events recorded so far, without waiting for new ones."""
    for event in client.watch(job.id):
        yield event
        if event.seq >= job.last_event_seq:
            return


def _print_event(event: common_pb2.JobEvent) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time.seconds))
    kind = event.WhichOneof("payload")
    if kind == "log":
        console.print(f"{stamp} {event.log.message}", markup=False, highlight=False)
    elif kind == "state":
        name = common_pb2.JobState.Name(event.state.state).removeprefix("JOB_STATE_")
        reason = f": {event.state.reason}" if event.state.reason else ""
        console.print(f"{stamp} [{name}]{reason}", markup=False, highlight=False)


@jobs_app.command("cancel")
def cancel_job(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    reason: Annotated[str, typer.Option(help="Recorded as the job's error.")] = "",
    trainer: TrainerOption = None,
) -> None:
    """Cancel a queued or running job (its workers stop; nothing is registered)."""
    with trainer_client(trainer) as client:
        job = client.cancel(job_id, reason)
    console.print(f"{job.id}: {_state(job)}")
