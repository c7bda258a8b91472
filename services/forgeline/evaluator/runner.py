"""The evaluator's job runner: score on Ray (or through the inference service), then report.

For a registry version, the suites run in one Ray task (`work.run_eval`) with the
resources the spec asks for; for a served model they run here, through the inference
service's API. Either way the runner then writes the job's report (`report.pb` in the job's
folder, read by GetEvalReport), registers every scored item as a DATASET version beside
the target (one `<suite>.jsonl` per suite), and attaches one registry evaluation per suite
to the target when the spec asks, so `promote --gate-suite mmlu` can read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path

from forgeline.client import exceptions
from forgeline.client.cache import CacheConfig, VersionCache
from forgeline.client.refs import format_ref, pinned
from forgeline.client.transfer import push_folder
from forgeline.common.jobs import JobContext, JobResult
from forgeline.common.ray_cluster import RayCluster, TaskHandle
from forgeline.common.sql import to_timestamp, utcnow
from forgeline.evaluator.results import SuiteResult
from forgeline.evaluator.scorer import item_count
from forgeline.evaluator.suites import build_suites, dataset_refs
from forgeline.evaluator.work import EvalInput, run_eval
from forgeline.v1 import common_pb2, evaluator_pb2, registry_pb2

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
REPORT_FILE = "report.pb"


def read_report(work_dir: Path) -> evaluator_pb2.EvalReport:
    """The report a job wrote.

    Raises:
        FailedPrecondition: there is none (the job has not succeeded).
    """
    try:
        return evaluator_pb2.EvalReport.FromString((work_dir / REPORT_FILE).read_bytes())
    except FileNotFoundError:
        raise exceptions.FailedPrecondition(
            f"job {work_dir.name} has no report yet; it is written when the job succeeds",
            subject=f"jobs/{work_dir.name}",
            type="JOB_STATE",
        ) from None


class EvalRunner:
    """Runs evaluation jobs and reports their results.

    Args:
        cache: The registry and this machine's version cache (reports and items).
        cluster: The Ray cluster scoring registry versions.
        worker_cache: How workers reach the registry and their machine's cache.
        served: Scores a served model through the inference service (see `served.py`).
    """

    resumable = True  # a restarted job scores again from the start

    def __init__(self, cache: VersionCache, cluster: RayCluster, worker_cache: CacheConfig, served):
        self.cache = cache
        self.cluster = cluster
        self.worker_cache = worker_cache
        self.served = served

    async def run(self, ctx: JobContext[evaluator_pb2.EvalJobSpec]) -> JobResult:
        """Scores the job's suites, writes its report; returns the items version, if any."""
        spec = ctx.spec
        if ctx.resume:
            ctx.log("the service restarted while this job ran; scoring again from the start")
        if spec.target.WhichOneof("target") == "served_model":
            results = await asyncio.to_thread(self._on_served, ctx)
        else:
            results = await self._on_ray(ctx)
        report = evaluator_pb2.EvalReport(
            job_id=ctx.job_id,
            target=spec.target,
            results=[r.to_pb() for r in results],
            create_time=to_timestamp(utcnow()),
        )
        outputs = []
        if spec.target.WhichOneof("target") == "version":
            items = await asyncio.to_thread(self._register_items, ctx, results)
            outputs.append(pinned(items))
            for result in report.results:
                result.items.CopyFrom(common_pb2.ModelRef(name=items.model, version=items.number))
            if spec.attach_to_registry:
                await asyncio.to_thread(self._attach, ctx, report)
        (ctx.work_dir / REPORT_FILE).write_bytes(report.SerializeToString())
        metrics = {
            f"{r.suite_name}/{name}": value for r in results for name, value in r.metrics.items()
        }
        for r in results:
            ctx.log(
                f"{r.suite_name}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in sorted(r.metrics.items()))
                + f" on {r.num_samples} items"
            )
        return JobResult(outputs=outputs, metrics=metrics)

    async def _on_ray(self, ctx: JobContext) -> list[SuiteResult]:
        r = ctx.spec.resources
        cpus = r.cpus_per_worker or max(
            1.0, (await asyncio.to_thread(self.cluster.resources))["CPU"]
        )
        resources = {"CPU": cpus, "GPU": r.gpus_per_worker}
        if r.memory_bytes_per_worker:
            resources["memory"] = float(r.memory_bytes_per_worker)
        job = EvalInput(ctx.job_id, ctx.spec.SerializeToString(), self.worker_cache, int(cpus))
        handle = await asyncio.to_thread(self.cluster.submit, run_eval, job, resources=resources)
        try:
            return await self._follow(ctx, handle)
        except asyncio.CancelledError:
            ctx.log("stopping the worker")
            await asyncio.shield(asyncio.to_thread(handle.stop))
            raise

    def _on_served(self, ctx: JobContext) -> list[SuiteResult]:
        spec = ctx.spec
        folders = {format_ref(r): self.cache.pull(r).path for r in dataset_refs(spec).values()}
        suites = build_suites(spec, folders)
        total = sum(item_count(suite.load()) for suite in suites)
        done = [0]

        def progress(n: int, stage: str) -> None:
            done[0] += n
            ctx.progress(done[0] / total if total else 0.0, done[0], total)

        ctx.log(f"scoring the served model {spec.target.served_model} on {len(suites)} suite(s)")
        return self.served(suites, spec.target.served_model, progress)

    async def _follow(self, ctx: JobContext, handle: TaskHandle) -> list[SuiteResult]:
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

    def _register_items(self, ctx: JobContext, results: list[SuiteResult]) -> registry_pb2.Version:
        """Every scored item, one JSONL file per suite, as a DATASET version of
        `<target>-evaluations` whose parent is the target."""
        target = ctx.spec.target.version
        with tempfile.TemporaryDirectory(prefix=f"forgeline-{ctx.job_id}-") as tmp:
            folder = Path(tmp)
            for r in results:
                with open(folder / f"{r.suite_name}.jsonl", "w", encoding="utf-8") as f:
                    for row in r.items:
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
            return push_folder(
                self.cache.registry,
                folder,
                f"{target.name}-evaluations"[:128],
                registry_pb2.VERSION_KIND_DATASET,
                parents=[format_ref(target)],
                lineage=registry_pb2.Lineage(job_id=ctx.job_id),
                description=f"per-item results of evaluation job {ctx.job_id}",
            )

    def _attach(self, ctx: JobContext, report: evaluator_pb2.EvalReport) -> None:
        for result in report.results:
            self.cache.registry.add_evaluation(
                report.target.version,
                registry_pb2.Evaluation(
                    suite=result.suite_name,
                    metrics=dict(result.metrics),
                    subjects={k: s.accuracy for k, s in result.subjects.items()},
                    subject_samples={k: s.total for k, s in result.subjects.items()},
                    job_id=ctx.job_id,
                    num_samples=result.num_samples,
                ),
            )
            ctx.log(f"attached {result.suite_name} to {format_ref(report.target.version)}")
