"""Keeping the blob store in step with the metadata: blob leases, quotas, garbage collection.

Every blob has a row in SQL whose `touch_time` an upload, a `StatUpload` that found it, or
a link into a manifest renews. Garbage collection deletes only blobs that no READY or
PENDING version references *and* nobody touched within the grace period, holding their
rows locked while it deletes (on PostgreSQL, rows another replica is touching are
skipped), so an upload that has stored its bytes but not linked them yet, on any replica,
is never collected. The same pass retires PENDING versions nobody finished (they become
FAILED, which frees their blobs) and unfinished uploads left behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from forgeline.client import exceptions
from forgeline.registry.blobs import BlobStore
from forgeline.registry.lookups import FAILED, PENDING, READY
from forgeline.registry.schema import BlobRow, EntryRow, VersionRow


@dataclass(frozen=True)
class StoreLimits:
    """What the registry accepts and how long it keeps what nobody uses.

    Attributes:
        max_file_bytes: Largest single file an upload may declare.
        quota_bytes: Total bytes of stored blobs; 0 means no quota.
        gc_grace_seconds: Blobs touched more recently than this are never collected.
        pending_ttl_seconds: A PENDING version unchanged this long is abandoned (FAILED).
    """

    max_file_bytes: int = 1024**4
    quota_bytes: int = 0
    gc_grace_seconds: float = 3600.0
    pending_ttl_seconds: float = 86400.0


@dataclass(frozen=True)
class CollectionReport:
    """What one garbage collection freed (or would free)."""

    blobs_deleted: int = 0
    bytes_freed: int = 0
    versions_expired: int = 0
    uploads_pruned: int = 0


def touch_blob(s: Session, sha256: str, size: int, now: datetime) -> None:
    """Creates or renews a blob's row, so garbage collection leaves it alone for a while."""
    values = {"sha256": sha256, "size": size, "touch_time": now}
    dialect = s.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(BlobRow).values(**values)
        s.execute(
            statement.on_conflict_do_update(
                index_elements=[BlobRow.sha256], set_={"touch_time": now}
            )
        )
        return
    row = s.get(BlobRow, sha256)
    if row is None:
        s.add(BlobRow(**values))
    else:
        row.touch_time = now


def check_upload_size(s: Session, limits: StoreLimits, sha256: str, size: int) -> None:
    """Refuses an upload the size cap or the quota does not allow, before any byte moves.

    Raises:
        InvalidArgument: the file is larger than `max_file_bytes` (on `header.size`).
        ResourceExhausted: storing it would pass the quota.
    """
    if size > limits.max_file_bytes:
        raise exceptions.InvalidArgument(
            "header.size",
            f"{size} bytes is more than the registry accepts per file ({limits.max_file_bytes})",
        )
    if limits.quota_bytes:
        if s.get(BlobRow, sha256) is not None:
            return  # already counted
        used = s.scalar(select(func.coalesce(func.sum(BlobRow.size), 0)))
        if used + size > limits.quota_bytes:
            raise exceptions.ResourceExhausted(
                f"storing {size} more bytes would pass the registry's quota of "
                f"{limits.quota_bytes} bytes ({used} used); archive versions and run "
                "garbage collection"
            )


def collect(
    s: Session, blobs: BlobStore, limits: StoreLimits, now: datetime, dry_run: bool = False
) -> CollectionReport:
    """Retires abandoned PENDING versions, then deletes unused blobs and stale uploads.

    Runs inside the caller's write transaction; blobs are deleted while their rows are
    locked, and their rows go with the transaction.
    """
    expired_before = now - timedelta(seconds=limits.pending_ttl_seconds)
    abandoned = select(VersionRow.id).where(
        VersionRow.state == PENDING, VersionRow.update_time < expired_before
    )
    if dry_run:
        expired = len(s.scalars(abandoned).all())
    else:
        expired = s.execute(
            update(VersionRow)
            .where(VersionRow.id.in_(abandoned))
            .values(
                state=FAILED,
                failure_reason="abandoned: PENDING for longer than "
                f"{limits.pending_ttl_seconds:.0f} s without a change",
                update_time=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    live = (
        select(EntryRow.sha256)
        .join(VersionRow, VersionRow.id == EntryRow.version_id)
        .where(VersionRow.state.in_([READY, PENDING]))
    )
    if dry_run:
        # Expiring versions would free their blobs too.
        live = live.where(~VersionRow.id.in_(abandoned))
    grace_before = now - timedelta(seconds=limits.gc_grace_seconds)
    query = select(BlobRow).where(BlobRow.touch_time < grace_before, ~BlobRow.sha256.in_(live))
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    dead = s.scalars(query).all()
    if not dry_run:
        _adopt_untracked(s, blobs, now)
    deleted = freed = 0
    for row in dead:
        if dry_run:
            size = blobs.size_of(row.sha256)
            deleted, freed = deleted + (size is not None), freed + (size or 0)
            continue
        size = blobs.size_of(row.sha256)
        freed += blobs.delete(row.sha256)
        deleted += size is not None
        s.delete(row)
    pruned = 0
    if not dry_run:
        pruned, pruned_bytes = blobs.prune_uploads(time.time() - limits.gc_grace_seconds)
        freed += pruned_bytes
    return CollectionReport(deleted, freed, expired, pruned)


def _adopt_untracked(s: Session, blobs: BlobStore, now: datetime) -> None:
    """Gives blobs stored without a row (before rows existed, or by a crashed upload) one,
    so the next collection after the grace period can judge them."""
    tracked = set(s.scalars(select(BlobRow.sha256)))
    for digest in blobs.digests():
        if digest not in tracked:
            touch_blob(s, digest, blobs.size_of(digest) or 0, now)
