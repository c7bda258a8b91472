"""The registry in the browser: models, versions with their files and metadata, the
lineage graph, alias history, evaluation reports, comparisons and gated promotion."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from forgeline.client import exceptions
from forgeline.client.refs import format_ref
from forgeline.console.auth import require_session
from forgeline.console.clients import Clients
from forgeline.console.errors import ConsoleError
from forgeline.console.views import (
    alias_event_view,
    evaluation_view,
    model_view,
    version_view,
)
from forgeline.v1 import registry_pb2

router = APIRouter(prefix="/api", dependencies=[Depends(require_session)])
LIST_LIMIT = 500


def _registry(request: Request):
    clients: Clients = request.app.state.clients
    return clients.registry


@router.get("/models")
def list_models(request: Request) -> dict:
    """Every model, newest first."""
    models = _registry(request).list_models()
    return {"models": [model_view(m) for _, m in zip(range(LIST_LIMIT), models, strict=False)]}


@router.get("/models/{name}")
def get_model(request: Request, name: str) -> dict:
    """A model, its versions (newest first) and the history of its aliases."""
    registry = _registry(request)
    model = registry.get_model(name)
    versions = registry.list_versions(model=name)
    return {
        "model": model_view(model),
        "versions": [version_view(v) for _, v in zip(range(LIST_LIMIT), versions, strict=False)],
        "alias_history": [alias_event_view(e) for e in registry.alias_history(name)],
    }


@router.get("/versions/{ref}")
def get_version(request: Request, ref: str) -> dict:
    """A version with its files (once READY) and evaluation reports."""
    registry = _registry(request)
    version = registry.get_version(ref)
    pinned = f"{version.model}:{version.number}"
    files = []
    if version.state == registry_pb2.VERSION_STATE_READY:
        manifest = registry.get_manifest(pinned)
        files = [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in manifest.entries]
    return {
        "version": version_view(version),
        "files": files,
        "evaluations": [evaluation_view(e) for e in registry.list_evaluations(pinned)],
    }


@router.get("/versions/{ref}/lineage")
def lineage(request: Request, ref: str) -> dict:
    """The versions `ref` derives from and that derive from it, as nodes and edges."""
    response = _registry(request).get_lineage(ref)
    nodes = [version_view(response.root), *(version_view(v) for v in response.versions)]
    edges = [{"parent": format_ref(e.parent), "child": format_ref(e.child)} for e in response.edges]
    return {"root": nodes[0]["ref"], "nodes": nodes, "edges": edges}


@router.get("/compare")
def compare(request: Request, a: str, b: str) -> dict:
    """Two versions' newest report of every suite both have, subject by subject, with
    the change from `a` to `b`."""
    registry = _registry(request)
    newest = {}
    for side, ref in (("a", a), ("b", b)):
        newest[side] = {}
        for evaluation in registry.list_evaluations(ref):  # newest first
            newest[side].setdefault(evaluation.suite, evaluation)
    suites = []
    for suite in sorted(newest["a"].keys() & newest["b"].keys()):
        ea, eb = newest["a"][suite], newest["b"][suite]
        rows = []
        for name in sorted({*ea.subjects, *eb.subjects}):
            va, vb = ea.subjects.get(name), eb.subjects.get(name)
            delta = vb - va if va is not None and vb is not None else None
            rows.append({"subject": name, "a": va, "b": vb, "delta": delta})
        metrics = []
        for name in sorted(ea.metrics.keys() & eb.metrics.keys()):
            va, vb = ea.metrics[name], eb.metrics[name]
            metrics.append({"metric": name, "a": va, "b": vb, "delta": vb - va})
        suites.append({"suite": suite, "subjects": rows, "metrics": metrics})
    return {"a": a, "b": b, "suites": suites}


class Promotion(BaseModel):
    """Moving an alias to a version, through the evaluation gate when a suite is given."""

    alias: str = Field(min_length=1, max_length=128)
    suite: str = ""
    metric: str = "accuracy"
    tolerance: float = Field(0.0, ge=0)
    minimum: float | None = None


@router.post("/versions/{ref}/promote")
def promote(request: Request, ref: str, body: Promotion) -> dict:
    """Points the alias at the version; 409 with the gate's decision when it refuses."""
    registry = _registry(request)
    version = registry.get_version(ref)
    gate = None
    if body.suite:
        gate = registry_pb2.EvaluationGate(
            suite=body.suite, metric=body.metric, tolerance=body.tolerance, minimum=body.minimum
        )
    try:
        answer = registry.set_alias(
            version.model, body.alias, version.number, gate=gate, actor="console"
        )
    except exceptions.FailedPrecondition as err:
        raise ConsoleError(409, err.message, code="gate_refused") from None
    return {"version": version_view(answer.version), "previous_version": answer.previous_version}
