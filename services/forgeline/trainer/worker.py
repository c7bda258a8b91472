"""What a recipe sees of the process it runs in: rank, device, inputs, reporting, checkpoints.

A recipe never talks to Ray, the registry or the job service directly; it gets a
`WorkerEnv`. `ray_worker.RayWorkerEnv` implements it inside Ray Train workers;
`LocalEnv` runs a recipe in the current process (single worker), for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised inside a recipe when the job was cancelled or the service is stopping."""


@dataclass(frozen=True)
class Inputs:
    """Local folders of a job's inputs (pulled from the registry, or given directly)."""

    base: Path
    dataset: Path
    reference: Path | None = None
    eval_dataset: Path | None = None
    adapter: Path | None = None  # an adapter of `base` to continue training


class WorkerEnv(Protocol):
    """The services a recipe uses; every method is safe to call on every rank."""

    rank: int
    world_size: int
    device: torch.device
    inputs: Inputs

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        """Publishes progress and metrics of an optimizer step (rank 0's are kept)."""
        ...

    def log(self, message: str) -> None:
        """Adds a line to the job's log (rank 0's are kept)."""
        ...

    def stop_requested(self) -> bool:
        """Whether the job should stop now."""
        ...

    def save_checkpoint(self, folder: Path, metrics: dict[str, float]) -> None:
        """Persists a checkpoint this worker wrote to `folder` (called on every rank)."""
        ...

    def restore_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        """The newest persisted checkpoint as a local folder, or None on a fresh start."""
        ...


def default_device(use_gpu: bool) -> torch.device:
    """The device of this worker: its GPU when it has one and was given one, else CPU."""
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class LocalEnv:
    """Runs a recipe in this process: one worker, checkpoints in a local folder.

    Args:
        inputs: Input folders.
        checkpoint_root: Where checkpoints go (`step-000010/`, ...); the newest is restored.
        device: Device to train on (CPU by default).
    """

    rank = 0
    world_size = 1

    def __init__(self, inputs: Inputs, checkpoint_root: Path, device: torch.device | None = None):
        self.inputs = inputs
        self.checkpoint_root = Path(checkpoint_root)
        self.device = device or torch.device("cpu")
        self.reports: list[tuple[int, int, dict[str, float]]] = []
        self.logs: list[str] = []
        self.stop = False

    def report(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        """Keeps every report (inspect `reports`)."""
        self.reports.append((step, total_steps, dict(metrics)))

    def log(self, message: str) -> None:
        """Keeps every line (inspect `logs`)."""
        log.info("%s", message)
        self.logs.append(message)

    def stop_requested(self) -> bool:
        """Whether `stop` was set."""
        return self.stop

    def save_checkpoint(self, folder: Path, metrics: dict[str, float]) -> None:
        """Moves `folder` under the checkpoint root, numbered after the existing ones."""
        self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        target = self.checkpoint_root / f"checkpoint-{len(self._existing()):06d}"
        shutil.copytree(folder, target)

    @contextlib.contextmanager
    def restore_checkpoint(self) -> Iterator[Path | None]:
        """Yields the newest checkpoint folder, or None."""
        existing = self._existing()
        yield existing[-1] if existing else None

    def latest(self) -> Path | None:
        """The newest checkpoint folder, or None."""
        existing = self._existing()
        return existing[-1] if existing else None

    def _existing(self) -> list[Path]:
        if not self.checkpoint_root.exists():
            return []
        return sorted(p for p in self.checkpoint_root.iterdir() if p.name.startswith("checkpoint-"))
