"""Persistent job table and append-only event log on SQLAlchemy (SQLite or PostgreSQL).

Every state change of a job is an event; the job row holds the state derived from its
events, and both are written in one transaction, so a reader never sees one without the
other. Events of a job are numbered from 1 without gaps (unique on job id + sequence).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from forgeline.client import exceptions
from forgeline.common.jobs.model import TERMINAL_STATES, Job, JobEvent
from forgeline.common.sql import (
    as_utc,
    create_sql_engine,
    decode_page_token,
    page_limit,
    split_page,
    to_timestamp,
    utcnow,
)
from forgeline.v1 import common_pb2

_ALLOWED = {
    common_pb2.JOB_STATE_QUEUED: {
        common_pb2.JOB_STATE_RUNNING,
        common_pb2.JOB_STATE_CANCELLED,
        common_pb2.JOB_STATE_FAILED,
    },
    # RUNNING -> QUEUED happens when a restarted service requeues a job to resume it.
    common_pb2.JOB_STATE_RUNNING: {common_pb2.JOB_STATE_QUEUED, *TERMINAL_STATES},
}


class _Base(DeclarativeBase):
    pass


class _JobRow(_Base):
    __tablename__ = "jobs"

    row: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    kind: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[int] = mapped_column(Integer, index=True)
    spec: Mapped[bytes] = mapped_column(LargeBinary)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    outputs: Mapped[list] = mapped_column(JSON, default=list)
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)

    def to_domain(self) -> Job:
        return Job(
            id=self.id,
            kind=self.kind,
            state=self.state,
            create_time=as_utc(self.create_time),
            labels=dict(self.labels or {}),
            start_time=as_utc(self.start_time),
            end_time=as_utc(self.end_time),
            progress=self.progress,
            metrics=dict(self.metrics or {}),
            error=self.error,
            outputs=list(self.outputs or []),
            last_event_seq=self.last_event_seq,
            attempt=self.attempt,
        )


class _EventRow(_Base):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    row: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class _TraceRow(_Base):
    """The trace context a job was submitted in, so that its run continues that trace."""

    __tablename__ = "job_traces"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    carrier: Mapped[dict] = mapped_column(JSON, default=dict)


class JobStore:
    """Jobs and their events in a SQL database. Thread-safe; every method is one transaction.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///trainer.db`` or ``postgresql+psycopg://...``.
    """

    def __init__(self, url: str):
        self._engine = create_sql_engine(url)
        _Base.metadata.create_all(self._engine)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        # SQLite allows one writer; serialising here avoids "database is locked" retries.
        self._write_lock = threading.Lock()

    def close(self) -> None:
        """Releases the connection pool."""
        self._engine.dispose()

    def _job_row(self, session: Session, job_id: str, *, lock: bool = False) -> _JobRow:
        query = select(_JobRow).where(_JobRow.id == job_id)
        if lock:
            query = query.with_for_update()
        row = session.scalars(query).one_or_none()
        if row is None:
            raise exceptions.NotFound("job", job_id)
        return row

    def create(
        self,
        kind: int,
        spec: bytes,
        labels: dict[str, str] | None = None,
        trace: dict[str, str] | None = None,
    ) -> Job:
        """Persists a new QUEUED job with its first event, and the trace context (W3C
        headers) it was submitted in, if any."""
        now = utcnow()
        job_id = f"job-{uuid.uuid4().hex[:16]}"
        with self._write_lock, self._sessions.begin() as session:
            row = _JobRow(
                id=job_id,
                kind=kind,
                state=common_pb2.JOB_STATE_QUEUED,
                spec=spec,
                labels=dict(labels or {}),
                create_time=now,
                metrics={},
                outputs=[],
                error="",
                progress=0.0,
                last_event_seq=0,
                attempt=0,
            )
            session.add(row)
            session.flush()
            if trace:
                session.add(_TraceRow(job_id=job_id, carrier=dict(trace)))
            self._append(
                session,
                row,
                common_pb2.JobEvent(
                    state=common_pb2.JobStateChange(state=common_pb2.JOB_STATE_QUEUED)
                ),
            )
            return row.to_domain()

    def get(self, job_id: str) -> Job:
        """Returns a job.

        Raises:
            NotFound: no job has this id.
        """
        with self._sessions() as session:
            return self._job_row(session, job_id).to_domain()

    def trace_carrier(self, job_id: str) -> dict[str, str]:
        """The trace context a job was submitted in; empty when it was submitted untraced."""
        with self._sessions() as session:
            row = session.get(_TraceRow, job_id)
            return dict(row.carrier) if row is not None else {}

    def count_by_state(self, kind: int) -> dict[int, int]:
        """How many jobs of `kind` are in each state (states without jobs are left out)."""
        query = (
            select(_JobRow.state, func.count()).where(_JobRow.kind == kind).group_by(_JobRow.state)
        )
        with self._sessions() as session:
            return {state: count for state, count in session.execute(query)}

    def get_spec(self, job_id: str) -> bytes:
        """Returns the serialized spec a job was submitted with."""
        with self._sessions() as session:
            return self._job_row(session, job_id).spec

    def list(
        self,
        kind: int,
        *,
        states: Iterable[int] = (),
        labels: dict[str, str] | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[Job], str]:
        """Lists jobs of `kind`, newest first; returns a page and the next page's token."""
        page_size = page_limit(page_size)
        after = decode_page_token(page_token)
        query = select(_JobRow).where(_JobRow.kind == kind).order_by(_JobRow.row.desc())
        states = list(states)
        if states:
            query = query.where(_JobRow.state.in_(states))
        if after is not None:
            query = query.where(_JobRow.row < after)
        wanted = dict(labels or {})
        jobs: list[_JobRow] = []
        with self._sessions() as session:
            # Label filtering happens here, not in SQL, to stay portable over JSON columns.
            for row in session.scalars(query.execution_options(yield_per=200)):
                if all(row.labels.get(k) == v for k, v in wanted.items()):
                    jobs.append(row)
                    if len(jobs) > page_size:
                        break
        page, token = split_page(jobs, page_size, lambda r: r.row)
        return [r.to_domain() for r in page], token

    def in_states(self, kind: int, states: Iterable[int]) -> list[Job]:
        """Jobs of `kind` in any of `states`, oldest first (used for recovery)."""
        query = (
            select(_JobRow)
            .where(_JobRow.kind == kind, _JobRow.state.in_(list(states)))
            .order_by(_JobRow.row)
        )
        with self._sessions() as session:
            return [r.to_domain() for r in session.scalars(query)]

    def append(
        self, job_id: str, event_pb: common_pb2.JobEvent, *, outputs: list[str] | None = None
    ) -> JobEvent:
        """Appends one event and updates the job's derived state in the same transaction.

        Raises:
            NotFound: unknown job.
            FailedPrecondition: a state change the lifecycle does not allow (e.g. from a
                terminal state).
        """
        with self._write_lock, self._sessions.begin() as session:
            row = self._job_row(session, job_id, lock=True)
            if outputs is not None:
                row.outputs = list(outputs)
            return self._append(session, row, event_pb)

    def _append(self, session: Session, row: _JobRow, event_pb: common_pb2.JobEvent) -> JobEvent:
        payload = event_pb.WhichOneof("payload")
        now = utcnow()
        if payload == "state":
            new = event_pb.state.state
            if row.last_event_seq and new not in _ALLOWED.get(row.state, set()):
                raise exceptions.FailedPrecondition(
                    f"job {row.id} is {common_pb2.JobState.Name(row.state)}; "
                    f"it cannot become {common_pb2.JobState.Name(new)}",
                    subject=f"jobs/{row.id}",
                    type="JOB_STATE",
                )
            row.state = new
            if new == common_pb2.JOB_STATE_RUNNING:
                row.start_time = now
                row.attempt += 1
            if new in TERMINAL_STATES:
                row.end_time = now
                row.error = event_pb.state.reason
                if new == common_pb2.JOB_STATE_SUCCEEDED:
                    row.progress = 1.0
        elif payload == "progress":
            row.progress = event_pb.progress.fraction
        elif payload == "metrics":
            row.metrics = {**row.metrics, **dict(event_pb.metrics.values)}
        row.last_event_seq += 1
        message = common_pb2.JobEvent()
        message.CopyFrom(event_pb)
        message.job_id = row.id
        message.seq = row.last_event_seq
        message.time.CopyFrom(to_timestamp(now))
        session.add(
            _EventRow(job_id=row.id, seq=row.last_event_seq, data=message.SerializeToString())
        )
        return JobEvent(row.id, row.last_event_seq, message)

    def events_after(self, job_id: str, after_seq: int, limit: int = 500) -> list[JobEvent]:
        """Events of a job with seq > `after_seq`, in order, at most `limit`."""
        query = (
            select(_EventRow)
            .where(_EventRow.job_id == job_id, _EventRow.seq > after_seq)
            .order_by(_EventRow.seq)
            .limit(limit)
        )
        with self._sessions() as session:
            return [
                JobEvent(r.job_id, r.seq, common_pb2.JobEvent.FromString(r.data))
                for r in session.scalars(query)
            ]
