"""Evaluation reports attached to versions: what the evaluator measured, and what gates read."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline.common.sql import as_utc, utcnow
from forgeline.registry.domain import Evaluation
from forgeline.registry.schema import EvaluationRow, VersionRow


def add_report(s: Session, row: VersionRow, evaluation: Evaluation) -> Evaluation:
    """Stores a report for a (READY) version; returns it with its time."""
    now = utcnow()
    s.add(
        EvaluationRow(
            version_id=row.id,
            suite=evaluation.suite,
            metrics=evaluation.metrics,
            subjects=evaluation.subjects,
            subject_samples=evaluation.subject_samples,
            job_id=evaluation.job_id,
            num_samples=evaluation.num_samples,
            create_time=now,
        )
    )
    evaluation.create_time = now
    return evaluation


def list_reports(s: Session, row: VersionRow, suite: str = "") -> list[Evaluation]:
    """A version's reports (of one suite, when given), newest first."""
    query = select(EvaluationRow).where(EvaluationRow.version_id == row.id)
    if suite:
        query = query.where(EvaluationRow.suite == suite)
    return [
        Evaluation(
            r.suite,
            dict(r.metrics),
            dict(r.subjects),
            r.job_id,
            r.num_samples,
            as_utc(r.create_time),
            dict(r.subject_samples or {}),
        )
        for r in s.scalars(query.order_by(EvaluationRow.id.desc()))
    ]
