"""`forgeline jobs list|show|follow|logs|cancel`, and following a job live.

`follow` is what `forgeline sft|pt|dpo` (and the demo) run after submitting, and what
`forgeline jobs follow JOB` runs to attach again: a progress bar with step, loss,
tokens/s and ETA, the job's log lines above it, and the outcome. Ctrl-C stops following,
not the job. `list` and `show` print JSON with `--json`; `show --config` prints the job's
spec as a job file that `forgeline sft|pt|dpo --config` runs again.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from forgeline.cli.choices import choice_option
from forgeline.cli.context import console, err_console, message_dict, print_json, trainer_client
from forgeline.cli.jobfile_write import dump_job_file, split_inputs
from forgeline.client.jobs import JobClient
from forgeline.client.labels import label
from forgeline.client.refs import format_ref
from forgeline.v1 import common_pb2

app = typer.Typer(help="Training jobs: list, inspect, follow, cancel.", no_args_is_help=True)

TrainerOption = Annotated[
    str | None, typer.Option("--trainer", help="Trainer address [FORGELINE_TRAINER_ADDRESS].")
]
TERMINAL_STATES = frozenset(
    {
        common_pb2.JOB_STATE_SUCCEEDED,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
    }
)


def state_label(state: int) -> str:
    """A job state as the commands show it, e.g. ``"running"``."""
    return label(common_pb2.JobState, state).lower()


def follow(
    jobs: JobClient, job_id: str, after_seq: int = 0, reattach: str | None = None
) -> common_pb2.Job:
    """Follows a job of any job service with a progress bar (step, loss, tokens/s, ETA) and
    its log lines; returns it when done.

    Args:
        jobs: The client of the job's service.
        job_id: The job.
        after_seq: Show only the events after this one.
        reattach: The command that follows the job again, e.g. `forgeline jobs follow ID`.
            When given, Ctrl-C stops following (the job keeps running) and says so.

    Raises:
        typer.Exit: with `reattach`, on Ctrl-C (exit code 130).
    """
    try:
        return _follow(jobs, job_id, after_seq)
    except KeyboardInterrupt:
        if reattach is None:
            raise
        err_console.print(f"stopped following {job_id}; the job keeps running.")
        err_console.print(f"follow it again with: {reattach}", markup=False, highlight=False)
        raise typer.Exit(130) from None


def _follow(jobs: JobClient, job_id: str, after_seq: int) -> common_pb2.Job:
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
        for event in jobs.watch(job_id, after_seq):
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
                progress.update(bar, description=f"{job_id} {state_label(event.state.state)}")
    job = jobs.get(job_id)[0]
    _print_outcome(job)
    return job


def _print_outcome(job: common_pb2.Job) -> None:
    if job.state == common_pb2.JOB_STATE_SUCCEEDED:
        outputs = ", ".join(format_ref(o) for o in job.outputs)
        console.print(f"[green]{job.id} succeeded[/]: registered {outputs}")
    else:
        err_console.print(f"[red]{job.id} {state_label(job.state)}[/]: {job.error}")


@app.command("list")
def list_jobs(
    state: Annotated[
        list[int] | None,
        choice_option(common_pb2.JobState, help="Only jobs in this state (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the jobs as a JSON list, nothing else.")
    ] = False,
    trainer: TrainerOption = None,
) -> None:
    """List training jobs, newest first."""
    with trainer_client(trainer) as client:
        found = list(client.list(states=state or []))
    if as_json:
        print_json([message_dict(job) for job in found])
        return
    table = Table("job", "state", "progress", "loss", "outputs", "created")
    for job in found:
        loss = job.metrics.get("loss")
        table.add_row(
            job.id,
            state_label(job.state),
            f"{job.progress:.0%}",
            f"{loss:.4f}" if loss is not None else "",
            ", ".join(format_ref(o) for o in job.outputs),
            job.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@app.command("show")
def show_job(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the job and its spec as JSON, nothing else."),
    ] = False,
    config: Annotated[
        bool,
        typer.Option(
            "--config", help="Print only its spec, as a job file for `forgeline sft --config`."
        ),
    ] = False,
    trainer: TrainerOption = None,
) -> None:
    """Show a job: state, metrics, outputs and its spec."""
    from google.protobuf import json_format

    if as_json and config:
        raise typer.BadParameter("give --json or --config, not both", param_hint="--config")
    with trainer_client(trainer) as client:
        job, spec = client.get(job_id)
    if as_json:
        print_json({"job": message_dict(job), "spec": message_dict(spec)})
        return
    if config:
        sys.stdout.write(dump_job_file(*split_inputs(spec)))
        return
    console.print(
        f"[bold]{job.id}[/] {state_label(job.state)} ({job.progress:.0%}, attempt {job.attempt})"
    )
    if job.error:
        console.print(f"error: {job.error}")
    if job.outputs:
        console.print("outputs: " + ", ".join(format_ref(o) for o in job.outputs))
    for key in sorted(job.metrics):
        console.print(f"  {key}: {job.metrics[key]:.6g}")
    console.print_json(json.dumps(json_format.MessageToDict(spec)))


@app.command("follow")
def follow_job(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    trainer: TrainerOption = None,
) -> None:
    """Follow a job live with its progress bar until it ends (Ctrl-C stops following only).

    Exits non-zero unless the job succeeds.
    """
    with trainer_client(trainer) as client:
        job = follow(client, job_id, reattach=f"forgeline jobs follow {job_id}")
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise typer.Exit(1)


@app.command("logs")
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
            events = client.watch(job_id) if job.state in TERMINAL_STATES else _replay(client, job)
        else:
            events = client.watch(job_id)
        for event in events:
            _print_event(event)


def _replay(client: JobClient, job: common_pb2.Job) -> Iterator[common_pb2.JobEvent]:
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
        name = label(common_pb2.JobState, event.state.state)
        reason = f": {event.state.reason}" if event.state.reason else ""
        console.print(f"{stamp} [{name}]{reason}", markup=False, highlight=False)


@app.command("cancel")
def cancel_job(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    reason: Annotated[str, typer.Option(help="Recorded as the job's error.")] = "",
    trainer: TrainerOption = None,
) -> None:
    """Cancel a queued or running job (its workers stop; nothing is registered)."""
    with trainer_client(trainer) as client:
        job = client.cancel(job_id, reason)
    console.print(f"{job.id}: {state_label(job.state)}")
