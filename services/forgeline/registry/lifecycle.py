"""A version's way through its states: created PENDING, filled with files, sealed READY.

A version that cannot be finished is marked FAILED; archiving ends the way. The checks
that guard each step live here; the store wraps each step in one transaction. Files reach
a version only while it is PENDING and only once their blob is stored, and a version
becomes READY only when every entry's blob is still in the blob store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline.client import exceptions
from forgeline.client.manifests import DIGEST_PATTERN
from forgeline.common.sql import utcnow
from forgeline.registry import domain
from forgeline.registry.blobs import BlobStore
from forgeline.registry.domain import Entry, check_model_name, check_text, check_values
from forgeline.registry.lookups import (
    ARCHIVED,
    FAILED,
    PENDING,
    READY,
    latest_number,
    require_ready,
    state_name,
)
from forgeline.registry.schema import AliasRow, EntryRow, ModelRow, ParentRow, VersionRow
from forgeline.v1 import common_pb2, registry_pb2


def check_new_version(
    model: str,
    kind: int,
    dataset_digest: str,
    spec_json: str,
    *,
    job_id: str = "",
    description: str = "",
    metrics: Mapping[str, float] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Checks the fields of a version to create, reporting every problem at once.

    Raises:
        InvalidArgument: bad model name, kind, dataset digest, spec JSON, or text or numbers
            that cannot be stored.
    """
    v = exceptions.Violations()
    check_text(v, "lineage.job_id", job_id, 64)
    check_text(v, "lineage.spec_json", spec_json)
    check_text(v, "description", description)
    check_values(v, "metrics", metrics or {})
    check_values(v, "metadata", metadata or {})
    try:
        check_model_name(model, "model")
    except exceptions.InvalidArgument as exc:
        v.items += exc.violations
    v.check(
        kind in registry_pb2.VersionKind.values() and kind != 0,
        "kind",
        "must be one of BASE, ADAPTER, MERGED, QUANTIZED, DATASET",
    )
    v.check(
        not dataset_digest or bool(DIGEST_PATTERN.fullmatch(dataset_digest)),
        "lineage.dataset_digest",
        "must be a lower-case hex sha256",
    )
    if spec_json:
        try:
            json.loads(spec_json)
        except ValueError as exc:
            v.add("lineage.spec_json", f"is not valid JSON: {exc}")
    v.raise_if_any()


def insert_version(
    s: Session,
    model: str,
    kind: int,
    *,
    parents: Iterable[common_pb2.ModelRef],
    job_id: str,
    dataset_digest: str,
    spec_json: str,
    metrics: dict[str, float] | None,
    metadata: dict[str, str] | None,
    description: str,
    create_model: bool,
) -> VersionRow:
    """Adds a PENDING version numbered one past the model's latest, with its parent edges.

    The fields must have passed `check_new_version`.

    Raises:
        InvalidArgument: a bad parent reference.
        NotFound: the model (unless `create_model`) or a parent does not exist.
        FailedPrecondition: a parent is not READY.
    """
    now = utcnow()
    m = s.scalars(select(ModelRow).where(ModelRow.name == model)).one_or_none()
    if m is None:
        if not create_model:
            raise exceptions.NotFound("model", model)
        m = ModelRow(name=model, description="", create_time=now)
        s.add(m)
        s.flush()
    parent_rows = [require_ready(s, p, f"parents[{i}]") for i, p in enumerate(parents)]
    row = VersionRow(
        model_id=m.id,
        number=latest_number(s, m.id) + 1,
        kind=kind,
        state=PENDING,
        job_id=job_id,
        dataset_digest=dataset_digest,
        spec_json=spec_json,
        metrics=dict(metrics or {}),
        meta=dict(metadata or {}),
        description=description,
        failure_reason="",
        manifest_digest="",
        file_count=0,
        total_bytes=0,
        create_time=now,
        update_time=now,
    )
    s.add(row)
    s.flush()
    for i, parent in enumerate(parent_rows):
        s.add(ParentRow(child_id=row.id, parent_id=parent.id, position=i))
    s.flush()
    return row


def check_stored(blobs: BlobStore, entry: Entry, field: str) -> None:
    """Checks that the blob an entry names is stored, with the size the entry claims.

    Raises:
        FailedPrecondition: the blob is not stored.
        InvalidArgument: the stored blob has another size (reported on `field`.size).
    """
    size = blobs.size_of(entry.sha256)
    if size is None:
        raise exceptions.FailedPrecondition(
            f"blob {entry.sha256} is not stored; upload it first",
            subject=f"blobs/{entry.sha256}",
            type="BLOB_MISSING",
        )
    if size != entry.size:
        raise exceptions.InvalidArgument(
            f"{field}.size", f"the stored blob has {size} bytes, not {entry.size}"
        )


def add_entry(s: Session, row: VersionRow, entry: Entry, field: str) -> None:
    """Adds an entry to a PENDING version's manifest; the same path and digest again is a no-op.

    Raises:
        InvalidArgument: the path already holds another digest (reported on `field`.path).
    """
    existing = s.get(EntryRow, (row.id, entry.path))
    if existing is not None:
        if existing.sha256 != entry.sha256:
            raise exceptions.InvalidArgument(
                f"{field}.path",
                f"{entry.path!r} was already uploaded with another digest",
            )
        return
    # `a` and `a/b` cannot both be files of one folder (a pull could not create both).
    parts = entry.path.split("/")
    folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
    clash = s.scalars(
        select(EntryRow.path).where(
            EntryRow.version_id == row.id,
            EntryRow.path.in_(folders)
            | EntryRow.path.startswith(f"{entry.path}/", autoescape=True),
        )
    ).first()
    if clash is not None:
        raise exceptions.InvalidArgument(
            f"{field}.path",
            f"{entry.path!r} and {clash!r} cannot both be files: one would be the other's folder",
        )
    s.add(EntryRow(version_id=row.id, path=entry.path, sha256=entry.sha256, size=entry.size))
    row.update_time = utcnow()


def seal(
    s: Session,
    blobs: BlobStore,
    row: VersionRow,
    expected_paths: Iterable[str],
    metrics: dict[str, float] | None,
) -> None:
    """Makes a PENDING version READY, with its file count, size and manifest digest.

    Raises:
        FailedPrecondition: an expected path has no entry (MANIFEST_INCOMPLETE), or an
            entry's blob is gone from the blob store (BLOB_MISSING).
    """
    name = f"{row.model.name}:{row.number}"
    subject = f"models/{row.model.name}/versions/{row.number}"
    entries = s.scalars(select(EntryRow).where(EntryRow.version_id == row.id)).all()
    present = {e.path for e in entries}
    missing = sorted(set(expected_paths) - present)
    if missing:
        raise exceptions.FailedPrecondition(
            f"version {name} lacks {len(missing)} expected file(s): " + ", ".join(missing[:10]),
            subject=subject,
            type="MANIFEST_INCOMPLETE",
        )
    gone = [e.path for e in entries if blobs.size_of(e.sha256) != e.size]
    if gone:
        raise exceptions.FailedPrecondition(
            f"blobs of {', '.join(gone[:10])} are missing from the store",
            subject=subject,
            type="BLOB_MISSING",
        )
    row.state = READY
    row.file_count = len(entries)
    row.total_bytes = sum(e.size for e in entries)
    row.manifest_digest = domain.manifest_digest([Entry(e.path, e.sha256, e.size) for e in entries])
    if metrics:
        row.metrics = {**row.metrics, **metrics}
    row.update_time = utcnow()
    s.flush()


def fail(row: VersionRow, reason: str) -> None:
    """Marks a PENDING version FAILED; an empty reason reads as "failed"."""
    row.state = FAILED
    row.failure_reason = reason or "failed"
    row.update_time = utcnow()


def archive(s: Session, row: VersionRow) -> None:
    """Archives a READY or FAILED version that no alias points at.

    Raises:
        FailedPrecondition: it is PENDING or already archived (VERSION_STATE), or an alias
            points at it (ALIASED).
    """
    subject = f"models/{row.model.name}/versions/{row.number}"
    if row.state not in (READY, FAILED):
        raise exceptions.FailedPrecondition(
            f"version {row.model.name}:{row.number} is {state_name(row.state)}; only READY or "
            "FAILED versions can be archived",
            subject=subject,
            type="VERSION_STATE",
        )
    aliases = s.scalars(select(AliasRow.name).where(AliasRow.version_id == row.id)).all()
    if aliases:
        raise exceptions.FailedPrecondition(
            f"aliases {', '.join(sorted(aliases))} point at {row.model.name}:{row.number}; "
            "move them first",
            subject=subject,
            type="ALIASED",
        )
    row.state = ARCHIVED
    row.update_time = utcnow()
