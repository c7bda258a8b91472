"""Evaluation gates: the metric a version must reach before an alias may point at it.

A gate names an evaluation suite and metric, an optional absolute minimum, and a tolerance
against the version the alias holds now: the candidate's newest report must not fall more
than the tolerance below the holder's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline.client import exceptions
from forgeline.registry.schema import EvaluationRow, VersionRow
from forgeline.v1 import registry_pb2


@dataclass(frozen=True)
class GateResult:
    """How a promotion gate was decided, for the caller and the alias history."""

    candidate: float
    holder: float | None


def checked_gate(gate: registry_pb2.EvaluationGate | None) -> registry_pb2.EvaluationGate | None:
    """Validates a requested gate; returns it, or None when no gate was asked for.

    A gate with neither suite nor metric counts as no gate, so a caller that always sends
    the message, empty when unused, is not refused.

    Raises:
        InvalidArgument: suite or metric missing, or a negative tolerance.
    """
    if gate is None or not (gate.suite or gate.metric):
        return None
    v = exceptions.Violations()
    v.check(bool(gate.suite), "gate.suite", "is required when a gate is given")
    v.check(bool(gate.metric), "gate.metric", "is required when a gate is given")
    v.check(gate.tolerance >= 0, "gate.tolerance", "must not be negative")
    v.raise_if_any()
    return gate


def latest_metric(s: Session, version_id: int, suite: str, metric: str) -> float | None:
    """The value of `metric` in the newest report of `suite` that has it, or None."""
    rows = s.scalars(
        select(EvaluationRow)
        .where(EvaluationRow.version_id == version_id, EvaluationRow.suite == suite)
        .order_by(EvaluationRow.id.desc())
    ).all()
    for r in rows:
        if metric in r.metrics:
            return float(r.metrics[metric])
    return None


def check_gate(
    s: Session,
    row: VersionRow,
    holder_id: int | None,
    gate: registry_pb2.EvaluationGate,
    alias: str,
) -> None:
    """Checks that version `row` passes `gate` to take `alias` from the version it holds.

    Args:
        s: The session of the alias move.
        row: The candidate version.
        holder_id: The version the alias points at now, None when the alias is new.
        gate: A gate accepted by `checked_gate`.
        alias: The alias being moved, for messages.

    Raises:
        FailedPrecondition: no report to judge by (GATE_NO_REPORT), below the minimum
            (GATE_BELOW_MINIMUM) or worse than the holder beyond tolerance (GATE_REGRESSION).
    """
    name = f"{row.model.name}:{row.number}"
    subject = f"models/{row.model.name}/aliases/{alias}"
    value = latest_metric(s, row.id, gate.suite, gate.metric)
    if value is None:
        raise exceptions.FailedPrecondition(
            f"{name} has no {gate.suite} report with metric {gate.metric!r}; evaluate it first",
            subject=subject,
            type="GATE_NO_REPORT",
        )
    if gate.HasField("minimum") and value < gate.minimum:
        raise exceptions.FailedPrecondition(
            f"{name} has {gate.suite}/{gate.metric} = {value:.4f}, below the minimum "
            f"{gate.minimum:.4f}",
            subject=subject,
            type="GATE_BELOW_MINIMUM",
        )
    if holder_id is None or holder_id == row.id:
        return
    held = latest_metric(s, holder_id, gate.suite, gate.metric)
    if held is not None and value < held - gate.tolerance:
        holder = s.get(VersionRow, holder_id)
        raise exceptions.FailedPrecondition(
            f"{name} has {gate.suite}/{gate.metric} = {value:.4f}, but {alias} holds "
            f"{holder.model.name}:{holder.number} with {held:.4f} (tolerance "
            f"{gate.tolerance:.4f})",
            subject=subject,
            type="GATE_REGRESSION",
        )
