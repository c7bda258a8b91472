"""Pieces every recipe shares: the data stream, batching, and the checkpoint layout.

A checkpoint folder holds `trainer_state.json` (step, position in the data stream, the
metrics history), `state/` (the engine's optimizer, schedule and trainable weights),
`rng-<rank>.pt` (each worker's random state) and, in the final one, `model/` (the
adapter or model in Hugging Face format) beside `final` (a marker). Every `.pt` file holds
tensors and plain state only and is read back with `weights_only=True`.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from forgeline.trainer.data import IGNORE_INDEX
from forgeline.trainer.distributed import world
from forgeline.trainer.state_files import load_plain_state

TRAINER_STATE = "trainer_state.json"
ENGINE_STATE = "state"
MODEL_DIR = "model"
FINAL_MARKER = "final"


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, micro-batches consumed, metrics so far."""

    step: int = 0
    micro_batches: int = 0
    tokens: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def write(self, folder: Path) -> None:
        """Saves the state as JSON in `folder`."""
        (folder / TRAINER_STATE).write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, folder: Path) -> TrainState:
        """Loads the state from a checkpoint folder."""
        return cls(**json.loads((folder / TRAINER_STATE).read_text()))


def save_rng(folder: Path, rank: int) -> None:
    """Saves this worker's random generators (dropout, shuffling) beside a checkpoint.

    Plain state only (tensors, and Python's state as a tuple of ints), so that
    `load_rng` reads it back without unpickling any object.
    """
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, folder / f"rng-{rank}.pt")


def load_rng(folder: Path, rank: int) -> None:
    """Restores what `save_rng` saved, when the checkpoint has this rank's file.

    Raises:
        UnsafeCheckpoint: the file holds more than plain state (nothing was run).
    """
    path = folder / f"rng-{rank}.pt"
    if not path.exists():
        return
    state = load_plain_state(path)
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MicroBatches:
    """An endless, resumable stream of this worker's micro-batches.

    Each epoch shuffles the items with `seed + epoch`, gives every worker an equal share
    (wrapping around so all workers take the same number of steps, as collectives
    require) and cuts it into micro-batches. Position `n` of the stream is the same on
    every run, so a resumed job continues exactly where the checkpoint was taken.
    """

    def __init__(
        self, items: Sequence[Any], batch_size: int, rank: int, world_size: int, seed: int
    ):
        if not items:
            raise ValueError("no training examples")
        self.items = items
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.per_worker = -(-len(items) // world_size)
        self.per_epoch = -(-self.per_worker // batch_size)

    def _epoch(self, epoch: int) -> list[list[Any]]:
        order = list(range(len(self.items)))
        random.Random(self.seed + epoch).shuffle(order)
        needed = self.per_worker * self.world_size
        order = (order * (needed // len(order) + 1))[:needed]
        mine = order[self.rank :: self.world_size]
        return [
            [self.items[i] for i in mine[j : j + self.batch_size]]
            for j in range(0, len(mine), self.batch_size)
        ]

    def stream(self, start: int = 0) -> Iterator[list[Any]]:
        """Micro-batches from position `start` on, forever."""
        epoch, offset = divmod(start, self.per_epoch)
        while True:
            batches = self._epoch(epoch)
            yield from batches[offset:]
            epoch, offset = epoch + 1, 0


def collate_lm(rows: Sequence[Any], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pads language-modelling rows (`Tokenized` or packed dicts) into one batch.

    Packed rows carry `position_ids` and get no attention mask: the restarting positions
    mark the sequence boundaries. Padding then forms a sequence of its own, positions
    restarting at 0, so no real token attends to it; its labels are ignored.
    """
    packed = isinstance(rows[0], dict)
    ids = [r["input_ids"] if packed else r.input_ids for r in rows]
    labels = [r["labels"] if packed else r.labels for r in rows]
    width = max(len(x) for x in ids)
    batch_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    batch_labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (x, y) in enumerate(zip(ids, labels, strict=True)):
        batch_ids[i, : len(x)] = torch.tensor(x)
        batch_labels[i, : len(y)] = torch.tensor(y)
    out = {"input_ids": batch_ids.to(device), "labels": batch_labels.to(device)}
    if packed:
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["position_ids"])
            positions[i, :n] = torch.tensor(r["position_ids"])
            positions[i, n:] = torch.arange(width - n)
        out["position_ids"] = positions.to(device)
    else:
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, x in enumerate(ids):
            mask[i, : len(x)] = 1
        out["attention_mask"] = mask.to(device)
    return out


def real_tokens(batch: dict[str, torch.Tensor], pad_id: int) -> int:
    """Tokens of a batch that are not padding."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int((batch["input_ids"] != pad_id).sum())


def target_count(batch: dict[str, torch.Tensor]) -> int:
    """Positions of a batch that carry a loss (labels shifted by one)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


class Throughput:
    """Tokens per second over a sliding window of steps."""

    def __init__(self, window: int = 20):
        self.window = window
        self._samples: list[tuple[float, int]] = []

    def add(self, tokens: int) -> float:
        """Records a step's tokens; returns the current rate."""
        now = time.perf_counter()
        self._samples.append((now, tokens))
        self._samples = self._samples[-(self.window + 1) :]
        if len(self._samples) < 2:
            return 0.0
        elapsed = self._samples[-1][0] - self._samples[0][0]
        counted = sum(t for _, t in self._samples[1:])
        return counted / elapsed if elapsed > 0 else 0.0


def report_every(total_steps: int, max_reports: int = 200) -> int:
    """Steps between reports, so a run reports at most about `max_reports` times."""
    return max(1, total_steps // max_reports)


def checkpoint_due(step: int, total_steps: int, every: int, steps_per_epoch: int) -> bool:
    """Whether to save after `step`: every `every` steps, or once per epoch when 0."""
    if step >= total_steps:
        return False  # the final save follows
    interval = every or steps_per_epoch
    return interval > 0 and step % interval == 0


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_checkpoint(
    engine: Any,
    env: Any,
    state: TrainState,
    tokenizer: Any,
    baseline_rss: int,
    final: bool = False,
) -> None:
    """Writes a checkpoint of a recipe and hands it to the worker environment to persist.

    Every rank writes its engine state and RNG; rank 0 writes the training state. The
    final checkpoint also holds the trained adapter or model (`MODEL_DIR`) and a marker.
    The metrics persisted with it carry the process's peak memory and the size of the
    process group that trained (what actually ran, whatever the spec asked for).
    """
    folder = Path(tempfile.mkdtemp(prefix="forgeline-ckpt-"))
    try:
        engine.save_state(folder / ENGINE_STATE)
        save_rng(folder, env.rank)
        if env.rank == 0:
            state.write(folder)
        if final:
            engine.export(folder / MODEL_DIR, tokenizer)
            if env.rank == 0:
                (folder / FINAL_MARKER).write_text(str(state.step))
        env.save_checkpoint(
            folder,
            {
                "step": float(state.step),
                "peak_rss_bytes": float(peak_rss_bytes()),
                "baseline_rss_bytes": float(baseline_rss),
                "world_size": float(world()[1]),
            },
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
