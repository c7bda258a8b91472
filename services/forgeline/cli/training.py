"""`forgeline sft|pt|dpo`: training from the command line.

The job comes from the flags, from a job file (`--config job.yaml`, see `jobfile`) with the
flags given overriding it, or both. Familiar flags of Hugging Face `transformers`,
ms-swift and LLaMA-Factory are aliases of ours (`--learning_rate`, `--num_train_epochs`,
`--lora_target`, `--cutoff_len`, `--bf16`, ...; see `training_flags`). The resulting spec is
checked with the trainer's own checks before anything else happens; `--print-config`
then prints it as a job file and stops.

A local dataset file is checked here first (the same checks the trainer runs, so a bad
file fails before any upload), then uploaded to the registry as a DATASET version
(content-addressed: submitting the same file again moves nothing), and the job is
submitted referencing it. Without `--detach` the command follows the job with a live
progress bar (step, loss, tokens/s, ETA) and exits non-zero unless it succeeds.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from forgeline.cli.aliases import AliasedCommand
from forgeline.cli.choices import choice_option
from forgeline.cli.context import console, err_console, trainer_client
from forgeline.cli.jobfile import (
    JobFileError,
    load_job_file,
    spec_problems,
)
from forgeline.cli.jobfile_write import dump_job_file, file_inputs, with_defaults
from forgeline.cli.jobs import TrainerOption, follow
from forgeline.cli.quantize import QuantizerOption
from forgeline.cli.training_flags import (
    ALIASES,
    DEEPSPEED_PRESETS,
    FIELDS,
    FLAG_ALIASES,
    INPUT_FIELDS,
    TUNER_HINTS,
    build_spec,
)
from forgeline.cli.training_inputs import (
    resolve_base_model,
    resolve_dataset,
    stacked_base,
)
from forgeline.client.labels import label
from forgeline.client.refs import parse_ref
from forgeline.v1 import common_pb2, trainer_pb2

RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry address [FORGELINE_REGISTRY_ADDRESS].")
]


class TrainingCommand(AliasedCommand):
    """`sft`, `pt` and `dpo`: our options, with the familiar spellings as aliases."""

    aliases = ALIASES
    flag_aliases = FLAG_ALIASES


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
        sys.stdout.write(dump_job_file(spec, file_inputs(inputs), with_defaults(spec, inputs)))
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


def _submit(task_name: str, options: dict, spec: trainer_pb2.TrainJobSpec) -> None:
    options["model"] = resolve_base_model(options["model"], options["registry"])
    if options["stack"]:
        options["model"] = stacked_base(options["model"], options["registry"], options["quantizer"])
    fmt_value = spec.dataset_format or trainer_pb2.DATASET_FORMAT_AUTO
    fmt = label(trainer_pb2.DatasetFormat, fmt_value).lower()
    options["dataset_ref"] = resolve_dataset(
        options["dataset"], task_name, fmt, options["registry"]
    )
    if options["eval_dataset"]:
        options["eval_dataset_ref"] = resolve_dataset(
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
        f"activations {m.activations_bytes / gib:.2f}, allocator {m.allocator_bytes / gib:.2f})",
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
            choice_option(
                trainer_pb2.LrScheduler, help="Schedule after warm-up \\[warmup-stable-decay]."
            ),
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
                trainer_pb2.Precision,
                help="Training precision \\[bf16 on GPUs and CPUs with bf16 units, else fp32].",
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
