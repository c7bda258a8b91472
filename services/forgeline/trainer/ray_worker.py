"""The worker side of a run: what every Ray Train worker executes.

`train_worker` is the function `TorchTrainer` starts on each worker. It pulls the job's
inputs by reference through this machine's `VersionCache`, wraps Ray Train's context in a
`RayWorkerEnv` (rank, device, live events, stop requests, checkpoints) and runs the recipe
of the job's task. The driver side (starting, following and stopping runs) is
`forgeline.trainer.launcher`; the two share only the event sink actor's handle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.client.cache import CacheConfig, VersionCache
from forgeline.trainer.config import Task, TrainConfig
from forgeline.trainer.worker import Inputs


@dataclass(frozen=True)
class InputRefs:
    """A job's inputs as pinned registry references."""

    base: str
    dataset: str
    reference: str = ""
    eval_dataset: str = ""
    adapter: str = ""  # an adapter of `base` the job continues training


class RayWorkerEnv:
    """`WorkerEnv` inside a Ray Train worker."""

    def __init__(self, sink: Any, inputs: Inputs, use_gpu: bool):
        import ray.train

        from forgeline.trainer.worker import default_device

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = default_device(use_gpu)
        self.inputs = inputs
        self._sink = sink
        self._stop_checked = 0.0
        self._stop = False

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        """Sends rank 0's progress to the service."""
        if self.rank == 0:
            self._sink.put.remote(("progress", step, total_steps, dict(metrics)))

    def log(self, message: str) -> None:
        """Sends rank 0's log line to the service."""
        if self.rank == 0:
            self._sink.put.remote(("log", message))

    def stop_requested(self) -> bool:
        """Asks the sink, at most twice a second."""
        import ray

        now = time.monotonic()
        if not self._stop and now - self._stop_checked > 0.5:
            self._stop_checked = now
            self._stop = ray.get(self._sink.stop_requested.remote())
        return self._stop

    def save_checkpoint(self, folder: Path, metrics: dict[str, float]) -> None:
        """Persists every worker's part of a checkpoint into one Ray Train checkpoint."""
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(folder)))

    @contextmanager
    def restore_checkpoint(self) -> Iterator[Path | None]:
        """The run's newest checkpoint (from an earlier attempt), as a local folder."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder)


def _materialize(refs: InputRefs, config: CacheConfig) -> Inputs:
    with VersionCache.open(config) as cache:
        return Inputs(
            base=cache.pull(refs.base).path,
            dataset=cache.pull(refs.dataset).path,
            reference=cache.pull(refs.reference).path if refs.reference else None,
            eval_dataset=cache.pull(refs.eval_dataset).path if refs.eval_dataset else None,
            adapter=cache.pull(refs.adapter).path if refs.adapter else None,
        )


def train_worker(payload: dict[str, Any]) -> None:
    """The function every Ray Train worker runs: inputs, recipe, checkpoints.

    Args:
        payload: The run's `train_loop_config`: `config` (the `TrainConfig`), `inputs`
            (`InputRefs`), `cache` (the `CacheConfig` to pull them with) and `sink` (the
            event sink actor's handle).
    """
    use_gpu = payload["config"].dist.use_gpu
    if not use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import ray
    import ray.train
    import torch

    cpus = int(payload["config"].dist.cpus_per_worker)
    if cpus:
        torch.set_num_threads(cpus)  # as many compute threads as the CPUs this worker owns

    sink = payload["sink"]
    cfg: TrainConfig = payload["config"]
    if ray.train.get_context().get_world_rank() == 0:
        from ray.util import get_current_placement_group

        sink.set_placement_group.remote(get_current_placement_group())
    env = RayWorkerEnv(sink, _materialize(payload["inputs"], payload["cache"]), use_gpu)
    if cfg.task is Task.DPO:
        from forgeline.trainer.recipes import dpo as recipe
    else:
        from forgeline.trainer.recipes import sft as recipe
    recipe.run(cfg, env)
