"""Stand-ins for a job service's planner and runner, to test the job machinery alone."""

from __future__ import annotations

import asyncio
import threading
import time

from forgeline.common.jobs import JobContext, JobResult
from forgeline.trainer.plan import Plan
from forgeline.v1 import trainer_pb2


class GatedRunner:
    """Reports `steps` progress events, pausing before step `pause_at` until released."""

    def __init__(self, steps: int = 4, pause_at: int | None = None, resumable: bool = True):
        self.steps = steps
        self.pause_at = pause_at
        self.resumable = resumable
        self.release = threading.Event()
        self.paused = threading.Event()
        self.attempts: list[tuple[int, bool]] = []
        self.cancelled = threading.Event()

    async def run(self, ctx: JobContext) -> JobResult:
        self.attempts.append((ctx.attempt, ctx.resume))
        try:
            for step in range(1, self.steps + 1):
                if step == self.pause_at:
                    self.paused.set()
                    while not self.release.is_set():
                        await asyncio.sleep(0.01)
                ctx.progress(step / self.steps, step, self.steps)
                ctx.metrics({"loss": 1.0 / step}, step)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return JobResult(outputs=["law-adapter:1"], metrics={"final_loss": 0.25})


class AcceptingPlanner:
    """Stores every spec as given: the job machinery is under test, not planning."""

    gpus_available = False
    cpu_bf16 = False
    memory_per_worker = 0

    def validate(self, spec: trainer_pb2.TrainJobSpec) -> trainer_pb2.TrainJobSpec:
        return spec

    def plan(self, spec: trainer_pb2.TrainJobSpec) -> Plan:
        return Plan(spec=spec)


class SlowCleanupRunner:
    """Runs until cancelled, then takes `cleanup_seconds` to stop its (pretend) workers.

    The cleanup is shielded, as a real runner's is; it records whether it ran to its end
    and whether the job's work folder still existed when it finished.
    """

    resumable = True

    def __init__(self, cleanup_seconds: float = 1.0):
        self.cleanup_seconds = cleanup_seconds
        self.started = threading.Event()
        self.cleanup_started = threading.Event()
        self.cleanup_done = threading.Event()
        self.folder_present_after_cleanup: bool | None = None

    def _cleanup(self, work_dir) -> None:
        self.cleanup_started.set()
        time.sleep(self.cleanup_seconds)
        self.folder_present_after_cleanup = work_dir.exists()
        self.cleanup_done.set()

    async def run(self, ctx: JobContext) -> JobResult:
        self.started.set()
        try:
            while True:
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(self._cleanup, ctx.work_dir))
            raise
