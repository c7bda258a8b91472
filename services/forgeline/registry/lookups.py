"""Finding registry rows by name, number or reference, and turning them into domain types.

Every function works inside a session the caller opened, so a lookup and the change that
depends on it happen in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from forgeline.client import exceptions
from forgeline.common.sql import as_utc
from forgeline.registry import domain
from forgeline.registry.domain import check_model_name
from forgeline.registry.schema import AliasRow, ModelRow, ParentRow, TagRow, VersionRow
from forgeline.v1 import common_pb2, registry_pb2

PENDING = registry_pb2.VERSION_STATE_PENDING
READY = registry_pb2.VERSION_STATE_READY
FAILED = registry_pb2.VERSION_STATE_FAILED
ARCHIVED = registry_pb2.VERSION_STATE_ARCHIVED
MAX_VERSION = 2**31 - 1
state_name = registry_pb2.VersionState.Name


def find_model(s: Session, name: str, field: str = "name") -> ModelRow:
    """The model called `name`.

    Raises:
        InvalidArgument: bad name (reported on `field`).
        NotFound: unknown model.
    """
    check_model_name(name, field)
    row = s.scalars(select(ModelRow).where(ModelRow.name == name)).one_or_none()
    if row is None:
        raise exceptions.NotFound("model", name)
    return row


def find_version(s: Session, model: str, number: int, field: str = "model") -> VersionRow:
    """Version `number` of `model`, in any state.

    Raises:
        InvalidArgument: bad model name (reported on `field`).
        NotFound: unknown model or version.
    """
    m = find_model(s, model, field)
    # Numbers are stored in 32-bit signed columns; a larger one cannot exist (nor be looked up).
    row = None
    if number <= MAX_VERSION:
        row = s.scalars(
            select(VersionRow).where(VersionRow.model_id == m.id, VersionRow.number == number)
        ).one_or_none()
    if row is None:
        raise exceptions.NotFound("version", f"{model}:{number}")
    return row


def resolve(s: Session, ref: common_pb2.ModelRef, field: str = "ref") -> VersionRow:
    """The version a reference names: by number, by alias, or the newest READY one.

    Raises:
        InvalidArgument: a malformed reference (reported under `field`).
        NotFound: unknown model, version or alias, or no READY version for a bare name.
    """
    domain.ref_from_pb(ref, field)
    m = find_model(s, ref.name, f"{field}.name")
    selector = ref.WhichOneof("selector")
    if selector == "version":
        return find_version(s, ref.name, ref.version, f"{field}.name")
    if selector == "alias":
        alias = s.get(AliasRow, (m.id, ref.alias))
        if alias is None:
            raise exceptions.NotFound("alias", f"{ref.name}@{ref.alias}")
        return s.get(VersionRow, alias.version_id)
    row = s.scalars(
        select(VersionRow)
        .where(VersionRow.model_id == m.id, VersionRow.state == READY)
        .order_by(VersionRow.number.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        raise exceptions.NotFound("version", ref.name, f"model {ref.name!r} has no READY version")
    return row


def require_ready(s: Session, ref: common_pb2.ModelRef, field: str = "ref") -> VersionRow:
    """The version a reference names, which must be READY to be used.

    Raises:
        InvalidArgument: a malformed reference.
        NotFound: the reference names nothing.
        FailedPrecondition: the version is not READY.
    """
    row = resolve(s, ref, field)
    if row.state != READY:
        raise exceptions.FailedPrecondition(
            f"version {row.model.name}:{row.number} is {state_name(row.state)}; only READY "
            "versions can be used",
            subject=f"models/{row.model.name}/versions/{row.number}",
            type="VERSION_STATE",
        )
    return row


def require_pending(s: Session, model: str, number: int) -> VersionRow:
    """Version `number` of `model`, which must still be PENDING to take files.

    Raises:
        NotFound: unknown model or version.
        FailedPrecondition: the version is not PENDING.
    """
    row = find_version(s, model, number)
    if row.state != PENDING:
        raise exceptions.FailedPrecondition(
            f"version {model}:{number} is {state_name(row.state)}, not PENDING",
            subject=f"models/{model}/versions/{number}",
            type="VERSION_STATE",
        )
    return row


def latest_number(s: Session, model_id: int) -> int:
    """The highest version number of a model, 0 when it has none."""
    latest = s.scalar(select(func.max(VersionRow.number)).where(VersionRow.model_id == model_id))
    return latest or 0


def to_model(s: Session, row: ModelRow) -> domain.Model:
    """The domain model of a row, with its latest version number and aliases."""
    latest = latest_number(s, row.id)
    aliases = {
        name: number
        for name, number in s.execute(
            select(AliasRow.name, VersionRow.number)
            .join(VersionRow, VersionRow.id == AliasRow.version_id)
            .where(AliasRow.model_id == row.id)
        )
    }
    return domain.Model(
        row.name,
        row.description,
        sorted(t.tag for t in row.tags),
        as_utc(row.create_time),
        latest,
        aliases,
    )


def to_version(s: Session, row: VersionRow) -> domain.Version:
    """The domain version of a row, with its parents and the aliases pointing at it."""
    parents = s.execute(
        select(ModelRow.name, VersionRow.number)
        .join(VersionRow, VersionRow.model_id == ModelRow.id)
        .join(ParentRow, ParentRow.parent_id == VersionRow.id)
        .where(ParentRow.child_id == row.id)
        .order_by(ParentRow.position)
    ).all()
    aliases = s.scalars(
        select(AliasRow.name).where(AliasRow.version_id == row.id).order_by(AliasRow.name)
    ).all()
    return domain.Version(
        model=row.model.name,
        number=row.number,
        kind=row.kind,
        state=row.state,
        parents=[(n, v) for n, v in parents],
        job_id=row.job_id,
        dataset_digest=row.dataset_digest,
        spec_json=row.spec_json,
        metrics=dict(row.metrics or {}),
        metadata=dict(row.meta or {}),
        description=row.description,
        aliases=list(aliases),
        file_count=row.file_count,
        total_bytes=row.total_bytes,
        create_time=as_utc(row.create_time),
        update_time=as_utc(row.update_time),
        failure_reason=row.failure_reason,
        manifest_digest=row.manifest_digest,
    )


def filter_versions(
    s: Session,
    query: Select,
    *,
    model: str = "",
    kinds: Iterable[int] = (),
    states: Iterable[int] = (),
    tag: str = "",
    alias: str = "",
    job_id: str = "",
) -> Select:
    """Narrows a query of versions by model, kinds, states, tag, alias and producing job.

    Raises:
        InvalidArgument: bad model name.
        NotFound: unknown model.
    """
    kinds, states = list(kinds), list(states)
    if model:
        query = query.where(VersionRow.model_id == find_model(s, model, "model").id)
    if kinds:
        query = query.where(VersionRow.kind.in_(kinds))
    if states:
        query = query.where(VersionRow.state.in_(states))
    if tag:
        query = query.where(
            VersionRow.model_id.in_(select(TagRow.model_id).where(TagRow.tag == tag))
        )
    if alias:
        query = query.where(
            VersionRow.id.in_(select(AliasRow.version_id).where(AliasRow.name == alias))
        )
    if job_id:
        query = query.where(VersionRow.job_id == job_id)
    return query
