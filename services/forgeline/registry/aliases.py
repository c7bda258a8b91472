"""Aliases: moving a model's named pointers between versions, and the history of every move.

Each move or removal is recorded as an alias event in the same transaction, so the history
always explains where an alias points. A move may be guarded by an evaluation gate.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline.client import exceptions
from forgeline.common.sql import as_utc, utcnow
from forgeline.registry import domain
from forgeline.registry.domain import check_model_name
from forgeline.registry.gates import check_gate
from forgeline.registry.schema import AliasEventRow, AliasRow, ModelRow, VersionRow
from forgeline.v1 import registry_pb2


def _record(s: Session, m: ModelRow, alias: str, version: int, previous: int, actor: str) -> None:
    s.add(
        AliasEventRow(
            model_id=m.id,
            alias=alias,
            version=version,
            previous_version=previous,
            actor=actor,
            time=utcnow(),
        )
    )


def move_alias(
    s: Session,
    m: ModelRow,
    alias: str,
    row: VersionRow,
    gate: registry_pb2.EvaluationGate | None,
    actor: str,
) -> int:
    """Points `alias` of model `m` at version `row`; returns the number it pointed at before.

    Args:
        s: The session of the move.
        m: The model.
        alias: A checked alias name.
        row: A READY version of `m`.
        gate: A gate accepted by `gates.checked_gate`, or None.
        actor: Who moves it, for the history.

    Returns:
        The previous version number, 0 when the alias is new.

    Raises:
        FailedPrecondition: the gate fails.
    """
    current = s.get(AliasRow, (m.id, alias))
    previous = s.get(VersionRow, current.version_id).number if current else 0
    if gate is not None:
        check_gate(s, row, current.version_id if current else None, gate, alias)
    if current is None:
        s.add(AliasRow(model_id=m.id, name=alias, version_id=row.id))
    else:
        current.version_id = row.id
    _record(s, m, alias, row.number, previous, actor)
    s.flush()
    return previous


def remove_alias(s: Session, m: ModelRow, alias: str, actor: str) -> int:
    """Removes `alias` of model `m`; returns the version number it pointed at.

    Raises:
        NotFound: the model has no such alias.
    """
    current = s.get(AliasRow, (m.id, alias))
    if current is None:
        raise exceptions.NotFound("alias", f"{m.name}@{alias}")
    previous = s.get(VersionRow, current.version_id).number
    s.delete(current)
    _record(s, m, alias, 0, previous, actor)
    return previous


def alias_events(s: Session, m: ModelRow, alias: str = "") -> list[domain.AliasEvent]:
    """Moves of one alias of model `m` (or of all its aliases), oldest first.

    Raises:
        InvalidArgument: bad alias name.
    """
    query = select(AliasEventRow).where(AliasEventRow.model_id == m.id)
    if alias:
        query = query.where(AliasEventRow.alias == check_model_name(alias, "alias"))
    return [
        domain.AliasEvent(r.alias, r.version, r.previous_version, r.actor, as_utc(r.time))
        for r in s.scalars(query.order_by(AliasEventRow.id))
    ]
