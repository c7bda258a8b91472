"""The registry's metadata store: models, versions, manifests, aliases, evaluations, lineage.

Plain Python over SQLAlchemy (SQLite by default, PostgreSQL by URL); the schema is created
and upgraded by Alembic migrations on open. Every public method is one transaction.
Versions are PENDING while their files arrive and become READY only through `commit`,
which checks that every manifest entry's blob is stored; nothing else can reference a
version that is not READY.

`RegistryStore` is the one entry point: it owns the engine and the transactions, and leaves
the steps inside them to the modules beside it (`lookups`, `lifecycle`, `aliases`, `gates`,
`lineage`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from forgeline.client import exceptions
from forgeline.client.manifests import check_path
from forgeline.common.sql import create_sql_engine, keyset_page, split_page, utcnow
from forgeline.registry import domain, lifecycle
from forgeline.registry.aliases import alias_events, move_alias, remove_alias
from forgeline.registry.blobs import BlobStore
from forgeline.registry.domain import Entry, Evaluation, check_model_name, check_texts
from forgeline.registry.evaluations import add_report, list_reports
from forgeline.registry.gates import checked_gate
from forgeline.registry.housekeeping import (
    CollectionReport,
    StoreLimits,
    check_upload_size,
    collect,
    touch_blob,
)
from forgeline.registry.lineage import walk_lineage
from forgeline.registry.lookups import (
    filter_versions,
    find_model,
    require_pending,
    require_ready,
    resolve,
    to_model,
    to_version,
)
from forgeline.registry.schema import (
    EntryRow,
    ModelRow,
    TagRow,
    VersionRow,
)
from forgeline.v1 import common_pb2, registry_pb2

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade_schema(engine) -> None:
    """Brings the database to the newest schema (Alembic `upgrade head`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class RegistryStore:
    """Metadata of every model and version, over a blob store for their bytes.

    Args:
        url: SQLAlchemy URL.
        blobs: Where file contents live.
        limits: Upload size cap, quota, and how long unused things are kept.
    """

    def __init__(self, url: str, blobs: BlobStore, limits: StoreLimits | None = None):
        self.engine = create_sql_engine(url)
        upgrade_schema(self.engine)
        self.blobs = blobs
        self.limits = limits or StoreLimits()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()

    def close(self) -> None:
        """Releases the connection pool."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        # One writer at a time in-process; the database's own locking covers other processes.
        with self._write_lock, self._sessions.begin() as session:
            yield session

    # -- models ----------------------------------------------------------------------------

    def create_model(
        self, name: str, description: str = "", tags: Iterable[str] = ()
    ) -> domain.Model:
        """Creates a model.

        Raises:
            InvalidArgument: bad name or tag.
            AlreadyExists: the name is taken.
        """
        check_model_name(name)
        tags = sorted({check_model_name(t, "tags") for t in tags})
        check_texts(description=description)
        try:
            with self._write() as s:
                row = ModelRow(name=name, description=description, create_time=utcnow())
                row.tags = [TagRow(tag=t) for t in tags]
                s.add(row)
                s.flush()
                return to_model(s, row)
        except IntegrityError:
            raise exceptions.AlreadyExists("model", name) from None

    def get_model(self, name: str) -> domain.Model:
        """Returns a model.

        Raises:
            NotFound: unknown model.
        """
        with self._sessions() as s:
            return to_model(s, find_model(s, name))

    def list_models(
        self, *, tag: str = "", name_prefix: str = "", page_size: int = 50, page_token: str = ""
    ) -> tuple[list[domain.Model], str]:
        """Models, newest first, filtered by tag and name prefix; returns a page and a token."""
        query, limit = keyset_page(select(ModelRow), ModelRow.id, page_size, page_token)
        if tag:
            query = query.where(ModelRow.tags.any(TagRow.tag == tag))
        if name_prefix:
            query = query.where(ModelRow.name.startswith(name_prefix, autoescape=True))
        with self._sessions() as s:
            rows, token = split_page(s.scalars(query).all(), limit, lambda r: r.id)
            return [to_model(s, r) for r in rows], token

    # -- versions --------------------------------------------------------------------------

    def create_version(
        self,
        model: str,
        kind: int,
        *,
        parents: Iterable[common_pb2.ModelRef] = (),
        job_id: str = "",
        dataset_digest: str = "",
        spec_json: str = "",
        metrics: dict[str, float] | None = None,
        metadata: dict[str, str] | None = None,
        description: str = "",
        create_model: bool = False,
    ) -> domain.Version:
        """Starts a PENDING version numbered one past the model's latest.

        Raises:
            InvalidArgument: bad name, kind, parent reference or dataset digest.
            NotFound: the model (unless `create_model`) or a parent does not exist.
            FailedPrecondition: a parent is not READY.
        """
        lifecycle.check_new_version(
            model,
            kind,
            dataset_digest,
            spec_json,
            job_id=job_id,
            description=description,
            metrics=metrics,
            metadata=metadata,
        )
        with self._write() as s:
            row = lifecycle.insert_version(
                s,
                model,
                kind,
                parents=parents,
                job_id=job_id,
                dataset_digest=dataset_digest,
                spec_json=spec_json,
                metrics=metrics,
                metadata=metadata,
                description=description,
                create_model=create_model,
            )
            return to_version(s, row)

    def get_version(self, ref: common_pb2.ModelRef) -> domain.Version:
        """Resolves a reference (any state for explicit numbers; READY for `name`).

        Raises:
            NotFound: unknown model, version or alias.
        """
        with self._sessions() as s:
            return to_version(s, resolve(s, ref))

    def list_versions(
        self,
        *,
        model: str = "",
        kinds: Iterable[int] = (),
        states: Iterable[int] = (),
        tag: str = "",
        alias: str = "",
        job_id: str = "",
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[domain.Version], str]:
        """Versions, newest first, with filters; returns a page and the next token."""
        query, limit = keyset_page(select(VersionRow), VersionRow.id, page_size, page_token)
        with self._sessions() as s:
            query = filter_versions(
                s,
                query,
                model=model,
                kinds=kinds,
                states=states,
                tag=tag,
                alias=alias,
                job_id=job_id,
            )
            rows, token = split_page(s.scalars(query).all(), limit, lambda r: r.id)
            return [to_version(s, r) for r in rows], token

    # -- manifests -------------------------------------------------------------------------

    def stat_upload(self, sha256: str, size: int) -> tuple[int, int]:
        """What the store has of a blob: (`BlobPresence`, bytes to resume from).

        A blob found present is leased for the garbage collector's grace period, for the
        link that usually follows.
        """
        stored = self.blobs.size_of(sha256)
        if stored is not None:
            with self._write() as s:
                touch_blob(s, sha256, stored, utcnow())
            return registry_pb2.BLOB_PRESENCE_PRESENT, 0
        partial = self.blobs.partial_size(sha256)
        if partial and partial <= size:
            return registry_pb2.BLOB_PRESENCE_PARTIAL, partial
        return registry_pb2.BLOB_PRESENCE_ABSENT, 0

    def check_upload(self, model: str, number: int, path: str, sha256: str, size: int) -> None:
        """Checks, before any byte moves, that the file may be uploaded to the version, and
        leases its blob so a garbage collection cannot take it before it is linked.

        Raises:
            InvalidArgument: bad path, or larger than the registry accepts.
            NotFound: unknown version.
            FailedPrecondition: the version is not PENDING.
            ResourceExhausted: it would pass the quota.
        """
        check_path(path, "header.path")
        with self._write() as s:
            require_pending(s, model, number)
            check_upload_size(s, self.limits, sha256, size)
            touch_blob(s, sha256, size, utcnow())

    def add_entry(self, model: str, number: int, entry: Entry, field: str = "entry") -> Entry:
        """Adds a stored blob to a PENDING version's manifest (idempotent for the same digest).

        Raises:
            InvalidArgument: bad path or digest, or the path already holds other content.
            FailedPrecondition: the version is not PENDING, or the blob is not stored.
        """
        check_path(entry.path, f"{field}.path")
        if entry.size > self.limits.max_file_bytes:
            raise exceptions.InvalidArgument(
                f"{field}.size", f"is more than the registry accepts ({self.limits.max_file_bytes})"
            )
        with self._write() as s:
            row = require_pending(s, model, number)
            # Lease first, then look: a collection that already took the blob is seen here.
            touch_blob(s, entry.sha256, entry.size, utcnow())
            lifecycle.check_stored(self.blobs, entry, field)
            lifecycle.add_entry(s, row, entry, field)
            return entry

    def manifest(self, ref: common_pb2.ModelRef) -> tuple[domain.Version, list[Entry]]:
        """A READY version and its files sorted by path.

        Raises:
            NotFound: unknown reference.
            FailedPrecondition: the version is not READY.
        """
        with self._sessions() as s:
            row = require_ready(s, ref)
            entries = s.scalars(
                select(EntryRow).where(EntryRow.version_id == row.id).order_by(EntryRow.path)
            ).all()
            return to_version(s, row), [Entry(e.path, e.sha256, e.size) for e in entries]

    def entry(self, ref: common_pb2.ModelRef, path: str) -> Entry:
        """One file of a READY version.

        Raises:
            NotFound: unknown reference or path.
            FailedPrecondition: the version is not READY.
        """
        check_path(path, "path")
        with self._sessions() as s:
            row = require_ready(s, ref)
            e = s.get(EntryRow, (row.id, path))
            if e is None:
                raise exceptions.NotFound("file", f"{row.model.name}:{row.number}/{path}")
            return Entry(e.path, e.sha256, e.size)

    # -- lifecycle -------------------------------------------------------------------------

    def commit(
        self,
        model: str,
        number: int,
        expected_paths: Iterable[str] = (),
        metrics: dict[str, float] | None = None,
    ) -> domain.Version:
        """Seals a PENDING version: every expected path present and every blob stored.

        Raises:
            NotFound: unknown version.
            FailedPrecondition: not PENDING (e.g. committed twice), a path missing, a blob gone.
        """
        with self._write() as s:
            row = require_pending(s, model, number)
            lifecycle.seal(s, self.blobs, row, expected_paths, metrics)
            return to_version(s, row)

    def fail(self, model: str, number: int, reason: str) -> domain.Version:
        """Marks a PENDING version FAILED with a reason.

        Raises:
            FailedPrecondition: the version is not PENDING.
        """
        check_texts(reason=reason)
        with self._write() as s:
            row = require_pending(s, model, number)
            lifecycle.fail(row, reason)
            return to_version(s, row)

    def archive(self, ref: common_pb2.ModelRef) -> domain.Version:
        """Archives a READY or FAILED version that no alias points at.

        Raises:
            FailedPrecondition: it is PENDING, already archived, or an alias points at it.
        """
        with self._write() as s:
            row = resolve(s, ref)
            lifecycle.archive(s, row)
            return to_version(s, row)

    # -- aliases ---------------------------------------------------------------------------

    def set_alias(
        self,
        model: str,
        alias: str,
        number: int,
        *,
        gate: registry_pb2.EvaluationGate | None = None,
        actor: str = "",
    ) -> tuple[domain.Version, int]:
        """Points `alias` at a READY version, if the optional evaluation gate passes.

        Returns the version and the number the alias pointed at before (0 when new).

        Raises:
            InvalidArgument: bad alias name or gate.
            NotFound: unknown model or version.
            FailedPrecondition: the version is not READY, or the gate fails (with both numbers).
        """
        check_model_name(alias, "alias")
        check_texts(actor=(actor, 256))
        gate = checked_gate(gate)
        with self._write() as s:
            m = find_model(s, model, "model")
            row = require_ready(s, common_pb2.ModelRef(name=model, version=number), "version")
            previous = move_alias(s, m, alias, row, gate, actor)
            return to_version(s, row), previous

    def delete_alias(self, model: str, alias: str, actor: str = "") -> int:
        """Removes an alias; returns the version it pointed at.

        Raises:
            NotFound: unknown model or alias.
        """
        check_model_name(alias, "alias")
        check_texts(actor=(actor, 256))
        with self._write() as s:
            return remove_alias(s, find_model(s, model, "model"), alias, actor)

    def alias_history(self, model: str, alias: str = "") -> list[domain.AliasEvent]:
        """Moves of one alias (or all of the model's), oldest first."""
        with self._sessions() as s:
            return alias_events(s, find_model(s, model, "model"), alias)

    # -- evaluations -----------------------------------------------------------------------

    def add_evaluation(self, ref: common_pb2.ModelRef, evaluation: Evaluation) -> Evaluation:
        """Attaches a report to a READY version.

        Raises:
            NotFound: unknown reference.
            FailedPrecondition: the version is not READY.
        """
        with self._write() as s:
            return add_report(s, require_ready(s, ref), evaluation)

    def list_evaluations(self, ref: common_pb2.ModelRef, suite: str = "") -> list[Evaluation]:
        """Reports of a version, newest first."""
        with self._sessions() as s:
            return list_reports(s, resolve(s, ref), suite)

    # -- lineage ---------------------------------------------------------------------------

    def lineage(
        self, ref: common_pb2.ModelRef, direction: int, max_depth: int = 0
    ) -> tuple[domain.Version, list[domain.Version], list[tuple[str, str]]]:
        """Walks parent/child edges from a version, breadth first.

        Returns the root, the versions reached and the (parent, child) edges as `model:N`.
        """
        with self._sessions() as s:
            root = resolve(s, ref)
            reached, edges = walk_lineage(s, root, direction, max_depth)
            return to_version(s, root), [to_version(s, r) for r in reached], edges

    # -- garbage collection ----------------------------------------------------------------

    def garbage_collect(self, dry_run: bool = False) -> CollectionReport:
        """Retires abandoned PENDING versions and deletes blobs no READY or PENDING version
        references and nobody touched within the grace period, and stale partial uploads.

        Archived and failed versions keep their manifest rows for lineage; only bytes go.
        """
        with self._write() as s:
            return collect(s, self.blobs, self.limits, utcnow(), dry_run)
