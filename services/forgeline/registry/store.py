"""The registry's metadata store: models, versions, manifests, aliases, evaluations, lineage.

Plain Python over SQLAlchemy (SQLite by default, PostgreSQL by URL); the schema is created
and upgraded by Alembic migrations on open. Every public method is one transaction.
Versions are PENDING while their files arrive and become READY only through `commit`,
which checks that every manifest entry's blob is stored; nothing else can reference a
version that is not READY.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from forgeline.client import exceptions
from forgeline.common.jobs.model import as_utc, utcnow
from forgeline.common.jobs.store import make_engine
from forgeline.registry import domain
from forgeline.registry.blobs import DIGEST_PATTERN, BlobStore
from forgeline.registry.domain import Entry, Evaluation, check_model_name, check_path
from forgeline.registry.schema import (
    AliasEventRow,
    AliasRow,
    EntryRow,
    EvaluationRow,
    ModelRow,
    ParentRow,
    TagRow,
    VersionRow,
)
from forgeline.v1 import common_pb2, registry_pb2

PENDING = registry_pb2.VERSION_STATE_PENDING
READY = registry_pb2.VERSION_STATE_READY
FAILED = registry_pb2.VERSION_STATE_FAILED
ARCHIVED = registry_pb2.VERSION_STATE_ARCHIVED
_STATE = registry_pb2.VersionState.Name
MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade_schema(engine) -> None:
    """Brings the database to the newest schema (Alembic `upgrade head`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _token(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode()


def _after(token: str) -> int | None:
    if not token:
        return None
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["id"])
    except (ValueError, KeyError, TypeError):
        raise exceptions.InvalidArgument(
            "page.page_token", "not a token from a previous page"
        ) from None


@dataclass(frozen=True)
class GateResult:
    """How a promotion gate was decided, for the caller and the alias history."""

    candidate: float
    holder: float | None


class RegistryStore:
    """Metadata of every model and version, over a blob store for their bytes.

    Args:
        url: SQLAlchemy URL.
        blobs: Where file contents live.
    """

    def __init__(self, url: str, blobs: BlobStore):
        self.engine = make_engine(url)
        upgrade_schema(self.engine)
        self.blobs = blobs
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

    # -- lookups ---------------------------------------------------------------------------

    def _model(self, s: Session, name: str, field: str = "name") -> ModelRow:
        check_model_name(name, field)
        row = s.scalars(select(ModelRow).where(ModelRow.name == name)).one_or_none()
        if row is None:
            raise exceptions.NotFound("model", name)
        return row

    def _version(self, s: Session, model: str, number: int, field: str = "model") -> VersionRow:
        m = self._model(s, model, field)
        row = s.scalars(
            select(VersionRow).where(VersionRow.model_id == m.id, VersionRow.number == number)
        ).one_or_none()
        if row is None:
            raise exceptions.NotFound("version", f"{model}:{number}")
        return row

    def _resolve(self, s: Session, ref: common_pb2.ModelRef, field: str = "ref") -> VersionRow:
        domain.ref_from_pb(ref, field)
        m = self._model(s, ref.name, f"{field}.name")
        selector = ref.WhichOneof("selector")
        if selector == "version":
            return self._version(s, ref.name, ref.version, f"{field}.name")
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
            raise exceptions.NotFound(
                "version", ref.name, f"model {ref.name!r} has no READY version"
            )
        return row

    def _ready(self, s: Session, ref: common_pb2.ModelRef, field: str = "ref") -> VersionRow:
        row = self._resolve(s, ref, field)
        if row.state != READY:
            raise exceptions.FailedPrecondition(
                f"version {row.model.name}:{row.number} is {_STATE(row.state)}; only READY "
                "versions can be used",
                subject=f"models/{row.model.name}/versions/{row.number}",
                type="VERSION_STATE",
            )
        return row

    def _pending(self, s: Session, model: str, number: int) -> VersionRow:
        row = self._version(s, model, number)
        if row.state != PENDING:
            raise exceptions.FailedPrecondition(
                f"version {model}:{number} is {_STATE(row.state)}, not PENDING",
                subject=f"models/{model}/versions/{number}",
                type="VERSION_STATE",
            )
        return row

    def _to_model(self, s: Session, row: ModelRow) -> domain.Model:
        latest = s.scalar(select(func.max(VersionRow.number)).where(VersionRow.model_id == row.id))
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
            latest or 0,
            aliases,
        )

    def _to_version(self, s: Session, row: VersionRow) -> domain.Version:
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
        try:
            with self._write() as s:
                row = ModelRow(name=name, description=description, create_time=utcnow())
                row.tags = [TagRow(tag=t) for t in tags]
                s.add(row)
                s.flush()
                return self._to_model(s, row)
        except IntegrityError:
            raise exceptions.AlreadyExists("model", name) from None

    def get_model(self, name: str) -> domain.Model:
        """Returns a model.

        Raises:
            NotFound: unknown model.
        """
        with self._sessions() as s:
            return self._to_model(s, self._model(s, name))

    def list_models(
        self, *, tag: str = "", name_prefix: str = "", page_size: int = 50, page_token: str = ""
    ) -> tuple[list[domain.Model], str]:
        """Models, newest first, filtered by tag and name prefix; returns a page and a token."""
        page_size = min(page_size or 50, 1000)
        query = select(ModelRow).order_by(ModelRow.id.desc()).limit(page_size + 1)
        after = _after(page_token)
        if after is not None:
            query = query.where(ModelRow.id < after)
        if tag:
            query = query.where(ModelRow.tags.any(TagRow.tag == tag))
        if name_prefix:
            query = query.where(ModelRow.name.startswith(name_prefix, autoescape=True))
        with self._sessions() as s:
            rows = s.scalars(query).all()
            token = _token(rows[page_size - 1].id) if len(rows) > page_size else ""
            return [self._to_model(s, r) for r in rows[:page_size]], token

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
        v = exceptions.Violations()
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
        now = utcnow()
        with self._write() as s:
            m = s.scalars(select(ModelRow).where(ModelRow.name == model)).one_or_none()
            if m is None:
                if not create_model:
                    raise exceptions.NotFound("model", model)
                m = ModelRow(name=model, description="", create_time=now)
                s.add(m)
                s.flush()
            parent_rows = [self._ready(s, p, f"parents[{i}]") for i, p in enumerate(parents)]
            latest = s.scalar(
                select(func.max(VersionRow.number)).where(VersionRow.model_id == m.id)
            )
            row = VersionRow(
                model_id=m.id,
                number=(latest or 0) + 1,
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
            return self._to_version(s, row)

    def get_version(self, ref: common_pb2.ModelRef) -> domain.Version:
        """Resolves a reference (any state for explicit numbers; READY for `name`).

        Raises:
            NotFound: unknown model, version or alias.
        """
        with self._sessions() as s:
            return self._to_version(s, self._resolve(s, ref))

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
        page_size = min(page_size or 50, 1000)
        query = select(VersionRow).order_by(VersionRow.id.desc()).limit(page_size + 1)
        after = _after(page_token)
        if after is not None:
            query = query.where(VersionRow.id < after)
        kinds, states = list(kinds), list(states)
        with self._sessions() as s:
            if model:
                query = query.where(VersionRow.model_id == self._model(s, model, "model").id)
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
            rows = s.scalars(query).all()
            token = _token(rows[page_size - 1].id) if len(rows) > page_size else ""
            return [self._to_version(s, r) for r in rows[:page_size]], token

    # -- manifests -------------------------------------------------------------------------

    def check_upload(self, model: str, number: int, path: str) -> None:
        """Checks, before any byte moves, that `path` may be uploaded to the version.

        Raises:
            InvalidArgument: bad path.
            NotFound: unknown version.
            FailedPrecondition: the version is not PENDING.
        """
        check_path(path, "header.path")
        with self._sessions() as s:
            self._pending(s, model, number)

    def add_entry(self, model: str, number: int, entry: Entry, field: str = "entry") -> Entry:
        """Adds a stored blob to a PENDING version's manifest (idempotent for the same digest).

        Raises:
            InvalidArgument: bad path or digest, or the path already holds other content.
            FailedPrecondition: the version is not PENDING, or the blob is not stored.
        """
        check_path(entry.path, f"{field}.path")
        size = self.blobs.size_of(entry.sha256)
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
        with self._write() as s:
            row = self._pending(s, model, number)
            existing = s.get(EntryRow, (row.id, entry.path))
            if existing is not None:
                if existing.sha256 != entry.sha256:
                    raise exceptions.InvalidArgument(
                        f"{field}.path",
                        f"{entry.path!r} was already uploaded with another digest",
                    )
                return entry
            s.add(
                EntryRow(version_id=row.id, path=entry.path, sha256=entry.sha256, size=entry.size)
            )
            row.update_time = utcnow()
            return entry

    def manifest(self, ref: common_pb2.ModelRef) -> tuple[domain.Version, list[Entry]]:
        """A READY version and its files sorted by path.

        Raises:
            NotFound: unknown reference.
            FailedPrecondition: the version is not READY.
        """
        with self._sessions() as s:
            row = self._ready(s, ref)
            entries = s.scalars(
                select(EntryRow).where(EntryRow.version_id == row.id).order_by(EntryRow.path)
            ).all()
            return self._to_version(s, row), [Entry(e.path, e.sha256, e.size) for e in entries]

    def entry(self, ref: common_pb2.ModelRef, path: str) -> Entry:
        """One file of a READY version.

        Raises:
            NotFound: unknown reference or path.
            FailedPrecondition: the version is not READY.
        """
        check_path(path, "path")
        with self._sessions() as s:
            row = self._ready(s, ref)
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
            row = self._pending(s, model, number)
            entries = s.scalars(select(EntryRow).where(EntryRow.version_id == row.id)).all()
            present = {e.path for e in entries}
            missing = sorted(set(expected_paths) - present)
            if missing:
                raise exceptions.FailedPrecondition(
                    f"version {model}:{number} lacks {len(missing)} expected file(s): "
                    + ", ".join(missing[:10]),
                    subject=f"models/{model}/versions/{number}",
                    type="MANIFEST_INCOMPLETE",
                )
            gone = [e.path for e in entries if self.blobs.size_of(e.sha256) != e.size]
            if gone:
                raise exceptions.FailedPrecondition(
                    f"blobs of {', '.join(gone[:10])} are missing from the store",
                    subject=f"models/{model}/versions/{number}",
                    type="BLOB_MISSING",
                )
            row.state = READY
            row.file_count = len(entries)
            row.total_bytes = sum(e.size for e in entries)
            row.manifest_digest = domain.manifest_digest(
                [Entry(e.path, e.sha256, e.size) for e in entries]
            )
            if metrics:
                row.metrics = {**row.metrics, **metrics}
            row.update_time = utcnow()
            s.flush()
            return self._to_version(s, row)

    def fail(self, model: str, number: int, reason: str) -> domain.Version:
        """Marks a PENDING version FAILED with a reason.

        Raises:
            FailedPrecondition: the version is not PENDING.
        """
        with self._write() as s:
            row = self._pending(s, model, number)
            row.state = FAILED
            row.failure_reason = reason or "failed"
            row.update_time = utcnow()
            return self._to_version(s, row)

    def archive(self, ref: common_pb2.ModelRef) -> domain.Version:
        """Archives a READY or FAILED version that no alias points at.

        Raises:
            FailedPrecondition: it is PENDING, already archived, or an alias points at it.
        """
        with self._write() as s:
            row = self._resolve(s, ref)
            subject = f"models/{row.model.name}/versions/{row.number}"
            if row.state not in (READY, FAILED):
                raise exceptions.FailedPrecondition(
                    f"version {row.model.name}:{row.number} is {_STATE(row.state)}; only READY or "
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
            return self._to_version(s, row)

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
        if gate is not None and (gate.suite or gate.metric):
            v = exceptions.Violations()
            v.check(bool(gate.suite), "gate.suite", "is required when a gate is given")
            v.check(bool(gate.metric), "gate.metric", "is required when a gate is given")
            v.check(gate.tolerance >= 0, "gate.tolerance", "must not be negative")
            v.raise_if_any()
        else:
            gate = None
        with self._write() as s:
            m = self._model(s, model, "model")
            row = self._ready(s, common_pb2.ModelRef(name=model, version=number), "version")
            current = s.get(AliasRow, (m.id, alias))
            previous = s.get(VersionRow, current.version_id).number if current else 0
            if gate is not None:
                self._check_gate(s, row, current.version_id if current else None, gate, alias)
            if current is None:
                s.add(AliasRow(model_id=m.id, name=alias, version_id=row.id))
            else:
                current.version_id = row.id
            s.add(
                AliasEventRow(
                    model_id=m.id,
                    alias=alias,
                    version=row.number,
                    previous_version=previous,
                    actor=actor,
                    time=utcnow(),
                )
            )
            s.flush()
            return self._to_version(s, row), previous

    def _latest_metric(self, s: Session, version_id: int, suite: str, metric: str) -> float | None:
        rows = s.scalars(
            select(EvaluationRow)
            .where(EvaluationRow.version_id == version_id, EvaluationRow.suite == suite)
            .order_by(EvaluationRow.id.desc())
        ).all()
        for r in rows:
            if metric in r.metrics:
                return float(r.metrics[metric])
        return None

    def _check_gate(
        self,
        s: Session,
        row: VersionRow,
        holder_id: int | None,
        gate: registry_pb2.EvaluationGate,
        alias: str,
    ) -> None:
        name = f"{row.model.name}:{row.number}"
        subject = f"models/{row.model.name}/aliases/{alias}"
        value = self._latest_metric(s, row.id, gate.suite, gate.metric)
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
        held = self._latest_metric(s, holder_id, gate.suite, gate.metric)
        if held is not None and value < held - gate.tolerance:
            holder = s.get(VersionRow, holder_id)
            raise exceptions.FailedPrecondition(
                f"{name} has {gate.suite}/{gate.metric} = {value:.4f}, but {alias} holds "
                f"{holder.model.name}:{holder.number} with {held:.4f} (tolerance "
                f"{gate.tolerance:.4f})",
                subject=subject,
                type="GATE_REGRESSION",
            )

    def delete_alias(self, model: str, alias: str, actor: str = "") -> int:
        """Removes an alias; returns the version it pointed at.

        Raises:
            NotFound: unknown model or alias.
        """
        check_model_name(alias, "alias")
        with self._write() as s:
            m = self._model(s, model, "model")
            current = s.get(AliasRow, (m.id, alias))
            if current is None:
                raise exceptions.NotFound("alias", f"{model}@{alias}")
            previous = s.get(VersionRow, current.version_id).number
            s.delete(current)
            s.add(
                AliasEventRow(
                    model_id=m.id,
                    alias=alias,
                    version=0,
                    previous_version=previous,
                    actor=actor,
                    time=utcnow(),
                )
            )
            return previous

    def alias_history(self, model: str, alias: str = "") -> list[domain.AliasEvent]:
        """Moves of one alias (or all of the model's), oldest first."""
        with self._sessions() as s:
            m = self._model(s, model, "model")
            query = select(AliasEventRow).where(AliasEventRow.model_id == m.id)
            if alias:
                query = query.where(AliasEventRow.alias == check_model_name(alias, "alias"))
            return [
                domain.AliasEvent(r.alias, r.version, r.previous_version, r.actor, as_utc(r.time))
                for r in s.scalars(query.order_by(AliasEventRow.id))
            ]

    # -- evaluations -----------------------------------------------------------------------

    def add_evaluation(self, ref: common_pb2.ModelRef, evaluation: Evaluation) -> Evaluation:
        """Attaches a report to a READY version.

        Raises:
            NotFound: unknown reference.
            FailedPrecondition: the version is not READY.
        """
        with self._write() as s:
            row = self._ready(s, ref)
            now = utcnow()
            s.add(
                EvaluationRow(
                    version_id=row.id,
                    suite=evaluation.suite,
                    metrics=evaluation.metrics,
                    subjects=evaluation.subjects,
                    job_id=evaluation.job_id,
                    num_samples=evaluation.num_samples,
                    create_time=now,
                )
            )
            evaluation.create_time = now
            return evaluation

    def list_evaluations(self, ref: common_pb2.ModelRef, suite: str = "") -> list[Evaluation]:
        """Reports of a version, newest first."""
        with self._sessions() as s:
            row = self._resolve(s, ref)
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
                )
                for r in s.scalars(query.order_by(EvaluationRow.id.desc()))
            ]

    # -- lineage ---------------------------------------------------------------------------

    def lineage(
        self, ref: common_pb2.ModelRef, direction: int, max_depth: int = 0
    ) -> tuple[domain.Version, list[domain.Version], list[tuple[str, str]]]:
        """Walks parent/child edges from a version, breadth first.

        Returns the root, the versions reached and the (parent, child) edges as `model:N`.
        """
        up = direction in (0, registry_pb2.LINEAGE_DIRECTION_ANCESTORS)
        down = direction in (0, registry_pb2.LINEAGE_DIRECTION_DESCENDANTS)
        with self._sessions() as s:
            root = self._resolve(s, ref)
            seen = {root.id}
            reached: list[VersionRow] = []
            edges: list[tuple[int, int]] = []
            queue = deque([(root.id, 0, up, down)])
            while queue:
                vid, depth, go_up, go_down = queue.popleft()
                if max_depth and depth >= max_depth:
                    continue
                steps = []
                if go_up:
                    steps += [
                        (p, (p, vid), True, False)
                        for p in s.scalars(
                            select(ParentRow.parent_id).where(ParentRow.child_id == vid)
                        )
                    ]
                if go_down:
                    steps += [
                        (c, (vid, c), False, True)
                        for c in s.scalars(
                            select(ParentRow.child_id).where(ParentRow.parent_id == vid)
                        )
                    ]
                for other, edge, next_up, next_down in steps:
                    edges.append(edge)
                    if other not in seen:
                        seen.add(other)
                        reached.append(s.get(VersionRow, other))
                        queue.append((other, depth + 1, next_up, next_down))
            keys = {r.id: f"{r.model.name}:{r.number}" for r in [root, *reached]}
            return (
                self._to_version(s, root),
                [self._to_version(s, r) for r in reached],
                [(keys[p], keys[c]) for p, c in dict.fromkeys(edges)],
            )

    # -- garbage collection ----------------------------------------------------------------

    def garbage_collect(self, dry_run: bool = False) -> tuple[int, int]:
        """Deletes blobs no PENDING, READY or FAILED version references.

        Returns the number of blobs and bytes freed (or that would be).
        """
        with self._write() as s:
            live = set(
                s.scalars(
                    select(EntryRow.sha256)
                    .join(VersionRow, VersionRow.id == EntryRow.version_id)
                    .where(VersionRow.state != ARCHIVED)
                )
            )
            dead = [d for d in self.blobs.digests() if d not in live]
            # Archived versions keep their manifest rows for lineage; only bytes are freed.
            if dry_run:
                return len(dead), sum(self.blobs.size_of(d) or 0 for d in dead)
            return len(dead), sum(self.blobs.delete(d) for d in dead)
