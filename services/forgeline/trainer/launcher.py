"""The driver side of a run on Ray Train: launch, follow, stop and resume jobs.

The service joins the Ray cluster at `FORGELINE_RAY_ADDRESS`, or starts a local one. A job
becomes one `TorchTrainer` run (DDP process group over gloo on CPU, NCCL on GPU) whose
workers run `forgeline.trainer.ray_worker.train_worker` and persist checkpoints through
Ray Train into the job's storage (a folder or URI every node reaches; see
`forgeline.trainer.storage`). Re-launching a job with the same storage restores its newest
checkpoint (Ray Train's run snapshot), which is how a restarted service resumes a job.

Live progress travels through a small `EventSink` actor that rank 0 writes to and the
service drains. Stopping is cooperative first (workers see the request at the next step
and raise), then forced: the task that drives the run is killed, which takes the
controller and the workers with it, and the run's placement group is removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from forgeline.client import exceptions
from forgeline.client.cache import CacheConfig
from forgeline.common.ray_cluster import EventSink, RayCluster
from forgeline.common.tracing import launch_span, ray_task
from forgeline.trainer.config import TrainConfig
from forgeline.trainer.ray_worker import InputRefs, train_worker
from forgeline.trainer.worker import StopRequested

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class LaunchRequest:
    """One run of one job.

    Attributes:
        job_id: The job (names the run).
        config: The resolved configuration.
        inputs: What the workers train on.
        cache: Where the workers pull inputs from (the registry and this machine's cache).
        storage: The job's checkpoint storage, a path or URI every node of the cluster
            reaches (Ray Train's `storage_path`).
    """

    job_id: str
    config: TrainConfig
    inputs: InputRefs
    cache: CacheConfig
    storage: str


@dataclass
class RunResult:
    """What a finished run left: its newest checkpoint and the last reported metrics.

    `checkpoint` is the checkpoint's path on the storage's filesystem (for a URI storage,
    without the scheme); `TrainStorage.fetch` makes it a local folder.
    """

    checkpoint: str
    metrics: dict[str, float] = field(default_factory=dict)


class TrainingFailed(exceptions.ForgelineError):
    """The workers raised; the message carries the worker's error."""


# -- the pieces that run in Ray on the driver's behalf ---------------------------------------


class RunEventSink(EventSink):
    """Rank 0's events for the service, and the stop request and placement group of a run."""

    def __init__(self) -> None:
        super().__init__()
        self._stop = False
        self._placement_group: Any = None

    def request_stop(self) -> None:
        """Asks the workers to stop at their next step."""
        self._stop = True

    def stop_requested(self) -> bool:
        """Whether a stop was requested."""
        return self._stop

    def set_placement_group(self, placement_group: Any) -> None:
        """Remembers the run's placement group, to remove it after a forced stop."""
        self._placement_group = placement_group

    def placement_group(self) -> Any:
        """The run's placement group, if a worker registered it."""
        return self._placement_group


def _fit(request: LaunchRequest, sink: Any) -> dict[str, Any]:
    """Runs in a Ray task: builds the TorchTrainer, fits it, returns its result."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    d = request.config.dist
    resources: dict[str, float] = {"CPU": d.cpus_per_worker or 1.0}
    if d.gpus_per_worker:
        resources["GPU"] = d.gpus_per_worker
    if d.memory_bytes_per_worker:
        resources["memory"] = float(d.memory_bytes_per_worker)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "config": request.config,
            "inputs": request.inputs,
            "cache": request.cache,
            "sink": sink,
        },
        torch_config=TorchConfig(backend="nccl" if d.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=d.num_workers,
            use_gpu=d.use_gpu,
            resources_per_worker=resources,
            accelerator_type=d.accelerator_type or None,
        ),
        run_config=RunConfig(
            name="run",
            storage_path=request.storage,
            failure_config=FailureConfig(max_failures=0),
            checkpoint_config=CheckpointConfig(
                num_to_keep=request.config.checkpoints.keep_last or None
            ),
        ),
    )
    result = trainer.fit()
    checkpoint = result.checkpoint
    return {
        "checkpoint": checkpoint.path if checkpoint is not None else "",
        "metrics": {
            k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)
        },
    }


# -- the service side ------------------------------------------------------------------------


class RunHandle:
    """A launched run: drain its events, wait for it, stop it."""

    def __init__(self, ref: Any, sink: Any):
        self._ref = ref
        self._sink = sink
        self.stop_requested = False

    def done(self) -> bool:
        """Whether the run ended (either way)."""
        import ray

        ready, _ = ray.wait([self._ref], timeout=0)
        return bool(ready)

    def events(self) -> list[tuple]:
        """Events rank 0 reported since the last call."""
        import ray

        try:
            return ray.get(self._sink.drain.remote(), timeout=30)
        except Exception:  # the sink is gone once the run is torn down
            return []

    def result(self) -> RunResult:
        """Waits for the run and returns its result.

        Raises:
            TrainingFailed: a worker raised (the message is the worker's error).
        """
        import ray

        try:
            out = ray.get(self._ref)
        except Exception as exc:
            raise TrainingFailed(_worker_error(exc)) from exc
        if not out["checkpoint"]:
            raise TrainingFailed("the run ended without a checkpoint")
        return RunResult(out["checkpoint"], out["metrics"])

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stops the workers: at their next step, or killed after `grace` seconds."""
        import ray
        from ray.util.placement_group import remove_placement_group

        self.stop_requested = True
        try:
            self._sink.request_stop.remote()
        except Exception:
            log.debug("event sink already gone")
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not self.done():
            time.sleep(0.2)
        if not self.done():
            log.warning("workers did not stop within %.0fs; killing the run", grace)
            placement_group = None
            try:
                placement_group = ray.get(self._sink.placement_group.remote(), timeout=5)
            except Exception:
                log.debug("no placement group registered")
            ray.cancel(self._ref, force=True)
            if placement_group is not None:
                try:
                    remove_placement_group(placement_group)
                except Exception:
                    log.debug("placement group already removed")
        ray.kill(self._sink)


def _worker_error(exc: BaseException) -> str:
    """The innermost, most useful message of a Ray Train failure.

    A worker process, the run's driver task or a whole node that disappeared (killed, out
    of memory, a machine lost) is said so before Ray's message, which names only an actor.
    """
    seen, lost = exc, False
    for _ in range(10):
        # Ray Train reports each rank's failure, a lost worker as a failed health check.
        failures = getattr(seen, "worker_failures", None) or {}
        lost = lost or _gone(seen) or any(_gone(f) for f in failures.values())
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None:
            break
        seen = cause
    if isinstance(seen, StopRequested) or "StopRequested" in str(exc):
        return "stopped on request"
    text = str(seen).strip().splitlines()
    tail = [line for line in text if line.strip()]
    message = (tail[-1] if tail else type(seen).__name__)[:2000]
    return f"a Ray worker or the node it ran on was lost: {message}" if lost else message


def _gone(exc: BaseException | None) -> bool:
    """Whether `exc` (or what it wraps) says a Ray process or node is gone."""
    import ray.exceptions

    gone = (
        ray.exceptions.RayActorError,  # died, or unreachable since its node went
        ray.exceptions.NodeDiedError,
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.LocalRayletDiedError,
    )
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, gone):
            return True
        exc = getattr(exc, "health_check_failure", None) or exc.__cause__
    return False


class RayLauncher(RayCluster):
    """Starts runs on a Ray cluster: the one at `address`, or a local one started lazily.

    Args:
        address: A Ray cluster address; empty starts (or reuses) a local Ray.
        num_cpus: CPUs of a locally started Ray (default: all).
    """

    def launch(self, request: LaunchRequest) -> RunHandle:
        """Starts a run and returns at once.

        Workers get the CPUs the spec asks for, or an equal share of the cluster's.
        """
        import ray

        self.ensure_started()
        cfg = request.config
        if not cfg.dist.cpus_per_worker:
            cpus = self.resources().get("CPU", 1.0)
            share = max(1.0, float(int(cpus // max(1, cfg.dist.num_workers))))
            from dataclasses import replace

            cfg = replace(cfg, dist=replace(cfg.dist, cpus_per_worker=share))
            request = replace(request, config=cfg)
        with launch_span("ray launch training", **{"ray.workers": cfg.dist.num_workers}):
            sink = ray.remote(num_cpus=0)(RunEventSink).remote()
            fit = ray.remote(num_cpus=0, max_retries=0)(ray_task(_fit, "ray training run"))
            return RunHandle(fit.remote(request, sink), sink)
