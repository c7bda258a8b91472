"""Submitting training jobs from the form: the choices it offers, a preview (the trainer's
plan with its memory estimate, the equivalent command line and job file), and submission.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from forgeline.client import exceptions
from forgeline.client.labels import label, labels
from forgeline.console.auth import require_session
from forgeline.console.clients import Clients
from forgeline.console.errors import ConsoleError
from forgeline.console.training_form import TASKS, field_violations, parse_form
from forgeline.console.views import job_view, message_dict
from forgeline.v1 import registry_pb2, trainer_pb2

router = APIRouter(prefix="/api/submit", dependencies=[Depends(require_session)])
CHOICES = {
    "tuner": trainer_pb2.Tuner,
    "precision": trainer_pb2.Precision,
    "lr_scheduler": trainer_pb2.LrScheduler,
    "dataset_format": trainer_pb2.DatasetFormat,
    "optimizer": trainer_pb2.Optimizer,
}
MODEL_KINDS = (
    registry_pb2.VERSION_KIND_BASE,
    registry_pb2.VERSION_KIND_ADAPTER,
    registry_pb2.VERSION_KIND_MERGED,
)
LIST_LIMIT = 300
# The form as the page posts it: field name -> value.
FormBody = Annotated[dict[str, Any], Body()]


def _clients(request: Request) -> Clients:
    return request.app.state.clients


@router.get("/choices")
def choices(request: Request) -> dict:
    """The form's choices: tasks, enum options, and the READY models and datasets."""
    registry = _clients(request).registry
    ready = [registry_pb2.VERSION_STATE_READY]

    def refs(kinds) -> list[dict]:
        found = registry.list_versions(kinds=kinds, states=ready)
        return [
            {"ref": f"{v.model}:{v.number}", "kind": label(registry_pb2.VersionKind, v.kind)}
            for _, v in zip(range(LIST_LIMIT), found, strict=False)
        ]

    return {
        "tasks": list(TASKS),
        "choices": {name: [k.replace("_", "-") for k in labels(e)] for name, e in CHOICES.items()},
        "models": refs(MODEL_KINDS),
        "datasets": refs([registry_pb2.VERSION_KIND_DATASET]),
    }


@router.post("/preview")
def preview(request: Request, form: FormBody) -> dict:
    """The trainer's plan of the form's job (problems by field, else its size and memory
    per worker), the equivalent command line and the job file."""
    job = parse_form(form)
    plan = _clients(request).trainer.plan(job.spec)
    return {
        "command_line": job.command_line(),
        "job_file": job.job_file(),
        "problems": field_violations(plan.problems),
        "warnings": list(plan.warnings),
        "plan": {
            "strategy": label(trainer_pb2.DistributionStrategy, plan.strategy).lower(),
            "num_examples": plan.num_examples,
            "total_steps": plan.total_steps,
            "total_tokens": plan.total_tokens,
            "memory_per_worker": message_dict(plan.memory_per_worker),
        },
    }


@router.post("")
def submit(request: Request, form: FormBody) -> dict:
    """Submits the form's job; 400 with the trainer's field violations under the form's
    names when it refuses the spec."""
    job = parse_form(form)
    try:
        submitted = _clients(request).trainer.submit(job.spec)
    except exceptions.InvalidArgument as err:
        raise ConsoleError(
            400, "the trainer refused the job", violations=field_violations(err.violations)
        ) from None
    return {"job": job_view(submitted, "training"), "command_line": job.command_line()}
