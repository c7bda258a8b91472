"""One evaluation job's scoring, as it runs in a Ray worker.

The worker pulls the target (an adapter with its base) and the suites' data through its
machine's version cache, scores every suite with one loaded model, and returns the results
with their per-item rows. Reporting (the registry, the job's report) is the service's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from forgeline.client.cache import CacheConfig, VersionCache
from forgeline.client.refs import format_ref
from forgeline.evaluator.results import SuiteResult
from forgeline.evaluator.suites import build_suites, dataset_refs
from forgeline.v1 import evaluator_pb2, registry_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalInput:
    """What the service hands the worker (picklable)."""

    job_id: str
    spec: bytes
    cache: CacheConfig
    num_threads: int


def run_eval(job: EvalInput, sink: Any) -> list[SuiteResult]:
    """The Ray task: scores every suite of the job's (registry version) target."""
    import torch

    from forgeline.evaluator.scorer import Scorer

    spec = evaluator_pb2.EvalJobSpec.FromString(job.spec)
    with VersionCache.open(job.cache) as cache:
        target = cache.pull(spec.target.version)
        model_dir, adapter_dir = target.path, None
        if target.version.kind == registry_pb2.VERSION_KIND_ADAPTER:
            model_dir, adapter_dir = cache.pull(target.version.parents[0]).path, target.path
        folders = {format_ref(ref): cache.pull(ref).path for ref in dataset_refs(spec).values()}
    sink.put.remote(("log", f"scoring {target.ref} on {len(spec.suites)} suite(s)"))
    scorer = Scorer(
        model_dir,
        adapter_dir=adapter_dir,
        batch_size=spec.batch_size,
        num_threads=job.num_threads or None,
        # Ray shows the task only the GPUs it was granted (none unless the spec asked).
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    last = [0.0]

    def progress(done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or done == total:  # at most two events a second
            last[0] = now
            sink.put.remote(("progress", done, total, stage))

    return scorer.run(build_suites(spec, folders), progress)
