"""The quantizer's job runner: one Ray task per job, followed until it registers its result.

`QuantizeRunner.run` is what the job machinery calls for each attempt of a job. It submits
`forgeline.quantizer.work.run_job` to Ray with the resources the spec asks for, turns the
task's events into job progress and log lines, and returns the version the task
registered. Cancelling a job kills its task. A job interrupted by a restart of the service
runs again from the start (quantization keeps no checkpoints), and its log says why.
"""

from __future__ import annotations

import asyncio
import logging

from forgeline.client.cache import CacheConfig
from forgeline.common.jobs import JobContext, JobResult
from forgeline.common.ray_cluster import RayCluster, TaskHandle
from forgeline.quantizer.spec import QuantizeConfig
from forgeline.quantizer.work import JobInput, run_job
from forgeline.v1 import quantizer_pb2

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class QuantizeRunner:
    """Runs quantize jobs on Ray.

    Args:
        cluster: The Ray cluster.
        worker_cache: How workers reach the registry and their machine's version cache.
    """

    resumable = True  # a restarted job runs again from the start

    def __init__(self, cluster: RayCluster, worker_cache: CacheConfig):
        self.cluster = cluster
        self.worker_cache = worker_cache

    async def run(self, ctx: JobContext[quantizer_pb2.QuantizeJobSpec]) -> JobResult:
        """Runs the job's task and returns the version it registered.

        Raises:
            Exception: what the task raised (the job fails with its message).
        """
        cfg = QuantizeConfig.from_pb(ctx.spec)
        if ctx.resume:
            ctx.log("the service restarted while this job ran; running it again from the start")
        resources = {"CPU": cfg.cpus or await self._cpus(), "GPU": cfg.gpus}
        if cfg.memory_bytes:
            resources["memory"] = float(cfg.memory_bytes)
        job = JobInput(
            ctx.job_id, ctx.spec.SerializeToString(), self.worker_cache, dict(ctx.spec.labels)
        )
        handle = await asyncio.to_thread(self.cluster.submit, run_job, job, resources=resources)
        try:
            result = await self._follow(ctx, handle)
        except asyncio.CancelledError:
            ctx.log("stopping the worker")
            await asyncio.shield(asyncio.to_thread(handle.stop))
            raise
        return JobResult(outputs=[result["output"]], metrics=result["metrics"])

    async def _cpus(self) -> float:
        resources = await asyncio.to_thread(self.cluster.resources)
        return max(1.0, float(int(resources.get("CPU", 1.0))))

    async def _follow(self, ctx: JobContext, handle: TaskHandle) -> dict:
        while True:
            done = await asyncio.to_thread(handle.done)
            for event in await asyncio.to_thread(handle.events):
                if event[0] == "log":
                    ctx.log(event[1])
                else:
                    _, step, total, _stage = event
                    ctx.progress(step / total if total else 0.0, step, total)
            if done:
                return await asyncio.to_thread(handle.result)
            await asyncio.sleep(POLL_SECONDS)
