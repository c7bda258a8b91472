"""`forgeline eval REF | eval compare A B`: the evaluator from the command line.

`forgeline eval law:3` evaluates a version on the suites the evaluator picks for it (and
says which); `--suite` names them instead (repeatable): `mmlu` (the bundled subset, or
`--mc-data` in MMLU layout), `ceval` and `cmmlu` (with `--mc-data`), `gsm8k` (bundled
subset), `qa` (with `--qa-data` and `--match`), `perplexity` (with `--text-data`). Local
files and folders are uploaded as DATASET versions first. The job is followed with a
progress bar and its results printed; `compare` prints two versions' results side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from typer.core import TyperGroup

from forgeline.cli.context import address_of, client_options, console, registry_client
from forgeline.cli.jobs import follow
from forgeline.client.jobs import EvaluatorClient
from forgeline.client.refs import format_ref, parse_ref, pinned
from forgeline.common.settings import ServiceName
from forgeline.v1 import common_pb2, registry_pb2
from forgeline.v1 import evaluator_pb2 as e


class RunByDefault(TyperGroup):
    """`forgeline eval REF ...` runs `eval run REF ...`; named subcommands stay reachable."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=RunByDefault,
    help="Evaluate versions and served models; compare two versions' results.",
    no_args_is_help=True,
)
EvaluatorOption = Annotated[
    str | None, typer.Option("--evaluator", help="Evaluator address [FORGELINE_EVALUATOR_ADDRESS].")
]
RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry address [FORGELINE_REGISTRY_ADDRESS].")
]
SUITES = ("mmlu", "ceval", "cmmlu", "gsm8k", "qa", "perplexity")
RULES = {
    "exact": e.MATCH_RULE_EXACT,
    "normalized": e.MATCH_RULE_NORMALIZED,
    "contains": e.MATCH_RULE_CONTAINS,
    "regex": e.MATCH_RULE_REGEX,
    "numeric": e.MATCH_RULE_NUMERIC,
}
FORMATS = {
    "mmlu": e.MULTIPLE_CHOICE_FORMAT_MMLU,
    "ceval": e.MULTIPLE_CHOICE_FORMAT_CEVAL,
    "cmmlu": e.MULTIPLE_CHOICE_FORMAT_CMMLU,
}


def evaluator_client(address: str | None = None) -> EvaluatorClient:
    """An evaluator client for the configured (or given) address."""
    return EvaluatorClient(address_of(ServiceName.EVALUATOR, address), client_options())


def _dataset(value: str, what: str, registry: str | None) -> common_pb2.ModelRef:
    """A registry reference for a local file or folder (uploaded) or a reference as given."""
    from forgeline.client.transfer import push_file, push_folder

    local = Path(value)
    if not local.exists():
        return parse_ref(value)
    name = f"{local.stem.lower().replace('_', '-')}-{what}"[:128]
    kind = registry_pb2.VERSION_KIND_DATASET
    with registry_client(registry) as client:
        push = push_folder if local.is_dir() else push_file
        version = push(client, local, name, kind, reuse_identical=True)
    console.print(f"{what} data {local.name} -> {pinned(version)}")
    return parse_ref(pinned(version))


@app.command("run")
def run(
    ref: Annotated[str | None, typer.Argument(help="The version to evaluate.")] = None,
    suite: Annotated[
        list[str] | None, typer.Option(help=f"Suite to run (repeatable): {', '.join(SUITES)}.")
    ] = None,
    subjects: Annotated[str, typer.Option(help="Comma-separated subjects (multiple choice).")] = "",
    shots: Annotated[int, typer.Option(help="Solved examples before each question.")] = 0,
    limit: Annotated[int, typer.Option(help="Questions per subject (or in all, for QA).")] = 0,
    mc_data: Annotated[str, typer.Option(help="Multiple-choice folder or DATASET ref.")] = "",
    qa_data: Annotated[str, typer.Option(help="QA JSONL file or DATASET ref.")] = "",
    text_data: Annotated[str, typer.Option(help="Text JSONL file or DATASET ref.")] = "",
    match: Annotated[str, typer.Option(help=f"QA match rule: {', '.join(RULES)}.")] = "exact",
    pattern: Annotated[str, typer.Option(help="Pattern of the regex rule.")] = "",
    served: Annotated[str, typer.Option(help="Evaluate this served model instead of REF.")] = "",
    attach: Annotated[bool, typer.Option(help="Attach the results to the version.")] = True,
    evaluator: EvaluatorOption = None,
    registry: RegistryOption = None,
) -> None:
    """Evaluate a version (or a served model); suites are picked for it when none is named."""
    if bool(ref) == bool(served):
        raise typer.BadParameter("give a version REF or --served NAME, not both")
    if match not in RULES:
        raise typer.BadParameter(f"use one of {', '.join(RULES)}", param_hint="--match")
    spec = e.EvalJobSpec(attach_to_registry=attach and not served)
    if served:
        spec.target.served_model = served
    else:
        spec.target.version.CopyFrom(parse_ref(ref))
    for name in suite or ():
        if name not in SUITES:
            raise typer.BadParameter(f"use one of {', '.join(SUITES)}", param_hint="--suite")
        spec.suites.append(
            _suite(
                name, subjects, shots, limit, mc_data, qa_data, text_data, match, pattern, registry
            )
        )
    with evaluator_client(evaluator) as client:
        job = client.submit(spec)
        _, stored = client.get(job.id)
        picked = ", ".join(s.name for s in stored.suites)
        console.print(f"submitted {job.id}: {picked}" + ("" if suite else " (picked for it)"))
        job = follow(client, job.id)
        if job.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise typer.Exit(1)
        print_report(client.report(job.id))


def _suite(name, subjects, shots, limit, mc_data, qa_data, text_data, match, pattern, registry):
    if name in FORMATS:
        mc = e.MultipleChoiceSuite(
            format=FORMATS[name],
            subjects=[s for s in subjects.split(",") if s],
            num_few_shot=shots,
            limit_per_subject=limit,
        )
        if mc_data:
            mc.dataset.CopyFrom(_dataset(mc_data, name, registry))
        elif name == "mmlu":
            mc.builtin = "mmlu-mini"
        else:
            raise typer.BadParameter(f"{name} needs --mc-data", param_hint="--suite")
        return e.EvalSuite(name=name, multiple_choice=mc)
    if name == "gsm8k":
        return e.EvalSuite(
            name=name, generation_qa=e.GenerationQaSuite(builtin="gsm8k-mini", limit=limit)
        )
    if name == "qa":
        if not qa_data:
            raise typer.BadParameter("qa needs --qa-data", param_hint="--suite")
        qa = e.GenerationQaSuite(
            dataset=_dataset(qa_data, "qa", registry),
            match_rule=RULES[match],
            regex_pattern=pattern,
            limit=limit,
        )
        return e.EvalSuite(name=name, generation_qa=qa)
    if not text_data:
        raise typer.BadParameter("perplexity needs --text-data", param_hint="--suite")
    return e.EvalSuite(
        name=name,
        perplexity=e.PerplexitySuite(dataset=_dataset(text_data, "text", registry), limit=limit),
    )


def print_report(report: e.EvalReport) -> None:
    """The results of every suite, with per-subject scores."""
    table = Table("suite", "metric", "value", "items", "seconds")
    for r in report.results:
        for metric, value in sorted(r.metrics.items()):
            table.add_row(
                r.suite_name, metric, f"{value:.4f}", str(r.num_samples), f"{r.wall_seconds:.1f}"
            )
    console.print(table)
    for r in report.results:
        if r.subjects:
            subjects = Table(f"{r.suite_name} subject", "correct", "items", "accuracy")
            for name, s in sorted(r.subjects.items()):
                subjects.add_row(name, str(s.correct), str(s.total), f"{s.accuracy:.4f}")
            console.print(subjects)
    refs = {format_ref(r.items) for r in report.results if r.items.name}
    if refs:
        console.print(f"per-item results: {', '.join(sorted(refs))}")


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="A version, e.g. law:2.")],
    b: Annotated[str, typer.Argument(help="Another version, e.g. law:3.")],
    registry: RegistryOption = None,
) -> None:
    """Print two versions' latest results per suite and subject, with the deltas (B - A)."""
    with registry_client(registry) as client:
        left = _latest(client.list_evaluations(a))
        right = _latest(client.list_evaluations(b))
    suites = sorted(set(left) & set(right))
    if not suites:
        console.print(f"{a} and {b} have no suite in common")
        raise typer.Exit(1)
    table = Table("suite", "metric / subject", a, b, "delta", "items")
    for name in suites:
        x, y = left[name], right[name]
        for metric in sorted(set(x.metrics) & set(y.metrics)):
            table.add_row(
                name, metric, *_pair(x.metrics[metric], y.metrics[metric]),
                f"{x.num_samples} / {y.num_samples}",
            )  # fmt: skip
        for subject in sorted(set(x.subjects) & set(y.subjects)):
            items = f"{x.subject_samples.get(subject, 0)} / {y.subject_samples.get(subject, 0)}"
            table.add_row("", subject, *_pair(x.subjects[subject], y.subjects[subject]), items)
    console.print(table)


def _latest(evaluations) -> dict[str, registry_pb2.Evaluation]:
    latest: dict[str, registry_pb2.Evaluation] = {}
    for evaluation in evaluations:  # newest first
        latest.setdefault(evaluation.suite, evaluation)
    return latest


def _pair(x: float, y: float) -> tuple[str, str, str]:
    return f"{x:.4f}", f"{y:.4f}", f"{y - x:+.4f}"
