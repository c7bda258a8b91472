"""Domain types of the job machinery and their protobuf conversions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from forgeline.common.sql import to_timestamp
from forgeline.v1 import common_pb2

JobState = common_pb2.JobState
JobKind = common_pb2.JobKind

TERMINAL_STATES = frozenset(
    {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}
)


@dataclass
class Job:
    """The service-independent state of one job."""

    id: str
    kind: int
    state: int
    create_time: datetime
    labels: dict[str, str] = field(default_factory=dict)
    start_time: datetime | None = None
    end_time: datetime | None = None
    progress: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    outputs: list[str] = field(default_factory=list)
    last_event_seq: int = 0
    attempt: int = 0

    @property
    def terminal(self) -> bool:
        """Whether the job reached SUCCEEDED, FAILED or CANCELLED."""
        return self.state in TERMINAL_STATES

    def to_pb(self) -> common_pb2.Job:
        """The `forgeline.v1.Job` message for this job."""
        from forgeline.client.refs import parse_ref

        return common_pb2.Job(
            id=self.id,
            kind=self.kind,
            state=self.state,
            labels=self.labels,
            create_time=to_timestamp(self.create_time),
            start_time=to_timestamp(self.start_time),
            end_time=to_timestamp(self.end_time),
            progress=self.progress,
            metrics=self.metrics,
            error=self.error,
            outputs=[parse_ref(ref) for ref in self.outputs],
            last_event_seq=self.last_event_seq,
            attempt=self.attempt,
        )


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event log: a sequence number and a `forgeline.v1.JobEvent`."""

    job_id: str
    seq: int
    message: common_pb2.JobEvent

    def to_pb(self) -> common_pb2.JobEvent:
        """The event as sent on the wire."""
        return self.message
