"""Prometheus metrics of a job service: jobs by state, state changes, queue and run times.

`forgeline_jobs` is read from the job table at each scrape, so it holds every job the
service ever ran, across restarts; the counters and histograms count what this process saw.
Label values are the enum names without their prefix (`train`, `running`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from forgeline.common.jobs.model import TERMINAL_STATES, Job
from forgeline.common.jobs.store import JobStore
from forgeline.v1 import common_pb2

JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


def kind_label(kind: int) -> str:
    """`train` for JOB_KIND_TRAIN."""
    return common_pb2.JobKind.Name(kind).removeprefix("JOB_KIND_").lower()


def state_label(state: int) -> str:
    """`running` for JOB_STATE_RUNNING."""
    return common_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


class _JobsByState:
    """Collects the number of jobs in each state from the job table."""

    def __init__(self, store: JobStore, kind: int):
        self.store = store
        self.kind = kind

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("forgeline_jobs", "", labels=["kind", "state"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "forgeline_jobs", "Jobs in the job table, by state.", labels=["kind", "state"]
        )
        counts = self.store.count_by_state(self.kind)
        kind = kind_label(self.kind)
        for state in common_pb2.JobState.values():
            if state != common_pb2.JOB_STATE_UNSPECIFIED:
                family.add_metric([kind, state_label(state)], counts.get(state, 0))
        yield family


class JobMetrics:
    """The metrics of one job kind, registered in a service's registry.

    Args:
        registry: The service's registry.
        store: The job table (read at each scrape).
        kind: The `JobKind` counted.
    """

    def __init__(self, registry: CollectorRegistry, store: JobStore, kind: int):
        self.kind = kind_label(kind)
        self.changes = Counter(
            "forgeline_job_state_changes",
            "Jobs that entered a state, by state.",
            ["kind", "state"],
            registry=registry,
        )
        self.queued = Histogram(
            "forgeline_job_queue_seconds",
            "Time from submission to a job's first run.",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.ran = Histogram(
            "forgeline_job_run_seconds",
            "Time from a job's (last) start to its end, by the state it ended in.",
            ["kind", "state"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        registry.register(_JobsByState(store, kind))  # type: ignore[arg-type]

    def entered(self, job: Job) -> None:
        """Records that `job` (as stored after the change) entered its state."""
        state = state_label(job.state)
        self.changes.labels(self.kind, state).inc()
        if job.state == common_pb2.JOB_STATE_RUNNING and job.attempt == 1 and job.start_time:
            self.queued.labels(self.kind).observe(
                (job.start_time - job.create_time).total_seconds()
            )
        elif job.state in TERMINAL_STATES and job.start_time and job.end_time:
            self.ran.labels(self.kind, state).observe(
                (job.end_time - job.start_time).total_seconds()
            )
