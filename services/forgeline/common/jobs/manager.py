"""Queueing, running, cancelling, recovering and watching jobs.

A `JobManager` owns one job kind (train, quantize or evaluate). Submitted jobs are
persisted QUEUED and handed to worker tasks that call the service's `Runner`. Runners
report through a `JobContext`, whose methods are thread-safe so work running in threads
(or waiting on Ray) can call them. On start the manager requeues QUEUED jobs and either
resumes RUNNING ones (when the runner can) or fails them with the reason.

Telemetry: a job is submitted with the trace context of the Submit call, and its run is a
span of that trace; what the run logs carries the job id; state changes are counted in the
service's metrics (`JobMetrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace

from forgeline.client import exceptions
from forgeline.client.telemetry import request_id
from forgeline.common import logs
from forgeline.common.jobs.metrics import JobMetrics, kind_label
from forgeline.common.jobs.model import Job, JobEvent
from forgeline.common.jobs.store import JobStore
from forgeline.common.tracing import current_carrier, end_span, extract, tracer
from forgeline.v1 import common_pb2

log = logging.getLogger(__name__)

SpecT = TypeVar("SpecT", bound=Message)

# Watchers re-read the log at least this often, to see writers in other processes.
WATCH_POLL_SECONDS = 1.0


@dataclass
class JobResult:
    """What a successful run produced: registry references and final metrics."""

    outputs: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


class JobContext(Generic[SpecT]):
    """What a runner gets: the job, its spec, a work directory and thread-safe reporting.

    `resume` is true when this attempt follows an interrupted one; the runner should then
    continue from its last checkpoint under `work_dir`.
    """

    def __init__(self, manager: JobManager, job: Job, spec: SpecT, work_dir: Path):
        self._manager = manager
        self.job_id = job.id
        self.attempt = job.attempt
        self.spec = spec
        self.work_dir = work_dir
        self.cancel_requested = False
        self.cancel_reason = ""

    @property
    def resume(self) -> bool:
        """Whether an earlier attempt of this job was interrupted."""
        return self.attempt > 1

    def progress(
        self, fraction: float, step: int = 0, total_steps: int = 0, eta: float = 0.0
    ) -> None:
        """Records progress (0..1, steps done and total, seconds left)."""
        self._manager._record(
            self.job_id,
            common_pb2.JobEvent(
                progress=common_pb2.JobProgress(
                    fraction=max(0.0, min(1.0, fraction)),
                    step=step,
                    total_steps=total_steps,
                    eta_seconds=eta,
                )
            ),
        )

    def metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Records metric values measured at `step`."""
        self._manager._record(
            self.job_id,
            common_pb2.JobEvent(metrics=common_pb2.JobMetrics(step=step, values=values)),
        )

    def log(self, message: str, level: int = common_pb2.LOG_LEVEL_INFO) -> None:
        """Appends a line to the job's log."""
        self._manager._record(
            self.job_id, common_pb2.JobEvent(log=common_pb2.JobLog(level=level, message=message))
        )


class Runner(Protocol[SpecT]):
    """Does the work of one job. Implemented by each job service (later on Ray).

    `run` raises a `ForgelineError` (or any exception) to fail the job; it is cancelled
    with `asyncio.CancelledError` and must then stop its workers before re-raising (with
    `finish_despite_cancel`, so that the service stopping meanwhile cannot cut that short).
    The job's work directory is removed only after `run` has returned or raised.
    """

    resumable: bool

    async def run(self, ctx: JobContext[SpecT]) -> JobResult:
        """Runs the job to completion and returns what it produced."""
        ...


class JobManager(Generic[SpecT]):
    """Runs jobs of one kind.

    Args:
        store: Where jobs and events persist.
        kind: The `JobKind` this manager owns.
        spec_type: The protobuf message class of this kind's specs.
        runner: Does the work.
        work_root: Parent of each job's work directory.
        concurrency: How many jobs run at once.
        validate: Called on every submitted spec before it is persisted; raises
            `InvalidArgument` with every problem found.
        metrics: Where state changes are counted; None counts nothing.
        service_name: The service running the jobs, named in their log lines.
    """

    def __init__(
        self,
        store: JobStore,
        kind: int,
        spec_type: type[SpecT],
        runner: Runner[SpecT],
        work_root: Path,
        *,
        concurrency: int = 1,
        validate: Callable[[SpecT], None] | None = None,
        metrics: JobMetrics | None = None,
        service_name: str = "",
    ):
        self.store = store
        self.metrics = metrics
        self.service_name = service_name
        self.kind = kind
        self.spec_type = spec_type
        self.runner = runner
        self.work_root = work_root
        self.concurrency = max(1, concurrency)
        self.validate = validate
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._running: dict[str, asyncio.Task] = {}
        self._contexts: dict[str, JobContext[SpecT]] = {}
        self._cancelling: dict[str, str] = {}  # job id -> reason of the cancel under way
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Recovers jobs left by a previous process and starts the worker tasks."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        for job in self.store.in_states(self.kind, [common_pb2.JOB_STATE_RUNNING]):
            if self.runner.resumable:
                self._record(
                    job.id, _log_event("service restarted; resuming from the last checkpoint")
                )
                self._record(job.id, _state_event(common_pb2.JOB_STATE_QUEUED))
            else:
                self._record(
                    job.id,
                    _state_event(
                        common_pb2.JOB_STATE_FAILED,
                        "the service restarted while the job was running and this job kind "
                        "cannot resume",
                    ),
                )
        for job in self.store.in_states(self.kind, [common_pb2.JOB_STATE_QUEUED]):
            self._queue.put_nowait(job.id)
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        """Stops the workers. Running jobs stay RUNNING in the store and resume on restart."""
        for task in self._workers:
            task.cancel()
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._workers, *self._running.values(), return_exceptions=True)
        self._workers.clear()

    # -- API -------------------------------------------------------------------------------

    def submit(self, spec: SpecT, labels: dict[str, str] | None = None) -> Job:
        """Validates and persists a job, then queues it.

        Raises:
            InvalidArgument: the spec is invalid (every problem listed).
        """
        if self.validate is not None:
            self.validate(spec)
        job = self.store.create(self.kind, spec.SerializeToString(), labels, current_carrier())
        if self.metrics is not None:
            self.metrics.entered(job)
        self._notify()
        self._queue.put_nowait(job.id)
        log.info("queued %s", job.id)
        return job

    def get(self, job_id: str) -> tuple[Job, SpecT]:
        """Returns a job of this kind and its spec.

        Raises:
            NotFound: no such job of this kind.
        """
        job = self.store.get(job_id)
        if job.kind != self.kind:
            raise exceptions.NotFound("job", job_id)
        return job, self.spec_type.FromString(self.store.get_spec(job_id))

    def cancel(self, job_id: str, reason: str = "cancelled by request") -> Job:
        """Cancels a queued or running job.

        A running job stays RUNNING until its runner has stopped its work; asking again
        meanwhile changes nothing and returns the job as it is.

        Raises:
            NotFound: no such job.
            FailedPrecondition: the job already ended.
        """
        job, _ = self.get(job_id)
        if job.terminal:
            raise exceptions.FailedPrecondition(
                f"job {job_id} already ended ({common_pb2.JobState.Name(job.state)})",
                subject=f"jobs/{job_id}",
                type="JOB_STATE",
            )
        task = self._running.get(job_id)
        if task is None:
            self._record(job_id, _state_event(common_pb2.JOB_STATE_CANCELLED, reason))
        elif job_id not in self._cancelling:
            self._cancelling[job_id] = reason
            ctx = self._contexts.get(job_id)  # absent while the task has not started yet
            if ctx is not None:
                ctx.cancel_requested, ctx.cancel_reason = True, reason
            task.cancel()
        # else: already being cancelled. Cancelling the task again would cut short the
        # runner's shielded cleanup (stopping workers, finishing an upload); the first
        # request ends the job once that cleanup is done.
        return self.store.get(job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Waits until a job ends and returns it."""
        async for _ in self.watch(job_id, 0, timeout=timeout):
            pass
        return self.store.get(job_id)

    async def watch(
        self, job_id: str, after_seq: int = 0, timeout: float | None = None
    ) -> AsyncIterator[JobEvent]:
        """Yields every event with seq > `after_seq`, then live ones, until the job ends.

        Each event is yielded exactly once and in order, however events and reads interleave:
        the log is the source of truth and a wake-up only prompts a re-read.

        Raises:
            NotFound: no such job.
            TimeoutError: `timeout` seconds passed before the job ended.
        """
        self.get(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after_seq
        while True:
            changed = self._changed  # captured before reading, so no wake-up is lost
            events = self.store.events_after(job_id, last)
            for ev in events:
                last = ev.seq
                yield ev
            if events:
                continue
            job = self.store.get(job_id)
            if job.terminal and last >= job.last_event_seq:
                return
            wait = WATCH_POLL_SECONDS
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError(f"job {job_id} still {common_pb2.JobState.Name(job.state)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    # -- internals -------------------------------------------------------------------------

    def _record(
        self, job_id: str, event_pb: common_pb2.JobEvent, outputs: list[str] | None = None
    ) -> JobEvent:
        ev = self.store.append(job_id, event_pb, outputs=outputs)
        if self.metrics is not None and event_pb.WhichOneof("payload") == "state":
            self.metrics.entered(self.store.get(job_id))
        self._notify()
        return ev

    def _notify(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake()
        else:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            job = self.store.get(job_id)
            if job.state != common_pb2.JOB_STATE_QUEUED:
                continue  # cancelled while queued
            task = asyncio.create_task(self._run_one(job_id))
            self._running[job_id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done() or _being_cancelled():
                    raise  # the worker itself is being stopped
                if task.cancelled() and job_id in self._cancelling:
                    # Cancelled before it started: nothing ran, nothing to clean up.
                    self._end_cancelled(job_id)
            finally:
                self._running.pop(job_id, None)
                self._contexts.pop(job_id, None)
                self._cancelling.pop(job_id, None)

    def _end_cancelled(self, job_id: str) -> None:
        if not self.store.get(job_id).terminal:
            reason = self._cancelling.get(job_id) or "cancelled by request"
            self._record(job_id, _state_event(common_pb2.JOB_STATE_CANCELLED, reason))

    async def _run_one(self, job_id: str) -> None:
        # This task's context: the job's log lines carry its id, and its run is a span of
        # the trace it was submitted in (each run task has a context of its own).
        logs.job_id.set(job_id)
        logs.service.set(self.service_name)
        request_id.set(job_id)
        span = tracer.start_span(
            f"job {kind_label(self.kind)}",
            context=extract(self.store.trace_carrier(job_id)),
            attributes={"forgeline.job_id": job_id},
        )
        otel_context.attach(trace.set_span_in_context(span))
        try:
            state = await self._run_traced(job_id)
        except BaseException as exc:
            end_span(span, exc)
            raise
        name = common_pb2.JobState.Name(state)
        span.set_attribute("forgeline.job_state", name)
        end_span(span, status="" if state == common_pb2.JOB_STATE_SUCCEEDED else name)

    async def _run_traced(self, job_id: str) -> int:
        """Runs a job to its end; returns the state it ended in."""
        self._record(job_id, _state_event(common_pb2.JOB_STATE_RUNNING))
        job, spec = self.get(job_id)
        work_dir = self.work_root / job_id
        work_dir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(self, job, spec, work_dir)
        self._contexts[job_id] = ctx
        try:
            result = await self.runner.run(ctx)
        except asyncio.CancelledError:
            if ctx.cancel_requested:
                reason = ctx.cancel_reason or "cancelled by request"
                self._record(job_id, _state_event(common_pb2.JOB_STATE_CANCELLED, reason))
                shutil.rmtree(work_dir, ignore_errors=True)
                return common_pb2.JOB_STATE_CANCELLED
            raise  # service shutdown: leave it RUNNING so the next start resumes or fails it
        except exceptions.ForgelineError as exc:
            self._record(job_id, _state_event(common_pb2.JOB_STATE_FAILED, exc.message))
            return common_pb2.JOB_STATE_FAILED
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._record(
                job_id, _state_event(common_pb2.JOB_STATE_FAILED, f"{type(exc).__name__}: {exc}")
            )
            return common_pb2.JOB_STATE_FAILED
        if result.metrics:
            self._record(
                job_id, common_pb2.JobEvent(metrics=common_pb2.JobMetrics(values=result.metrics))
            )
        self._record(job_id, _state_event(common_pb2.JOB_STATE_SUCCEEDED), outputs=result.outputs)
        return common_pb2.JOB_STATE_SUCCEEDED


def _being_cancelled() -> bool:
    """Whether the current task itself was asked to stop (not just something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _state_event(state: int, reason: str = "") -> common_pb2.JobEvent:
    return common_pb2.JobEvent(state=common_pb2.JobStateChange(state=state, reason=reason))


def _log_event(message: str) -> common_pb2.JobEvent:
    return common_pb2.JobEvent(
        log=common_pb2.JobLog(level=common_pb2.LOG_LEVEL_INFO, message=message)
    )
