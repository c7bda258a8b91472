"""The trainer's job runner: inputs from the registry, a run on Ray, the result registered.

`TrainRunner.run` is what the job machinery calls for each attempt of a job. It pulls the
inputs (so workers on this machine find them cached), launches the run, turns the
workers' events into job progress, metrics and log lines, and on success registers the
trained adapter (ADAPTER; parents: the base, the dataset and, when the job continued one,
the earlier adapter) or model (MERGED) with its lineage, final
metrics, the loss curve as CSV and PNG, and the training log. A cancelled job stops its
workers and registers nothing (a version whose upload was under way is archived); an
interrupted one resumes from its newest checkpoint, or adopts the version an earlier
attempt registered before the service died. Paths in the job's DeepSpeed JSON are placed
under the job's folder before the run is launched. Checkpoints go to the job's training
storage (`forgeline.trainer.storage`: its folder, a shared path or a URI), from which the
result is read back, downloading it first when the storage is a URI.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

from google.protobuf import json_format

from forgeline.client import exceptions
from forgeline.client.cache import CacheConfig, VersionCache
from forgeline.client.refs import format_ref, pinned
from forgeline.client.transfer import push_folder
from forgeline.common.jobs import JobContext, JobResult, finish_despite_cancel
from forgeline.trainer.config import TrainConfig
from forgeline.trainer.config.deepspeed_json import resolve_paths
from forgeline.trainer.launcher import (
    InputRefs,
    LaunchRequest,
    RayLauncher,
    RunHandle,
    RunResult,
    TrainingFailed,
)
from forgeline.trainer.recipes.common import MODEL_DIR, TrainState
from forgeline.trainer.storage import TrainStorage
from forgeline.v1 import registry_pb2, trainer_pb2

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
TRAINING_DIR = "training"
LOG_FILE = "train.log"
CURVE_COLUMNS = (
    "step",
    "loss",
    "learning_rate",
    "grad_norm",
    "tokens_per_second",
    "epoch",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
)


class TrainRunner:
    """Runs training jobs on Ray and registers their results.

    Args:
        cache: The registry and this machine's version cache (resolve, pull, register).
        launcher: Starts runs on Ray.
        worker_cache: How workers reach the registry and their machine's cache.
        storage: Where runs keep their checkpoints (default: each job's folder).
    """

    resumable = True

    def __init__(
        self,
        cache: VersionCache,
        launcher: RayLauncher,
        worker_cache: CacheConfig,
        storage: TrainStorage | None = None,
    ):
        self.cache = cache
        self.launcher = launcher
        self.worker_cache = worker_cache
        self.storage = storage or TrainStorage()

    async def run(self, ctx: JobContext[trainer_pb2.TrainJobSpec]) -> JobResult:
        """Trains, registers the result, and returns its reference and final metrics.

        Raises:
            InvalidArgument: the spec's DeepSpeed JSON has a refused setting (a job stored
                before the rule existed).
            FailedPrecondition: the service restarted and the job does not allow resuming.
            TrainingFailed: a worker raised, or the result could not be read from the
                training storage.
        """
        cfg = _confined(TrainConfig.from_pb(ctx.spec), ctx.work_dir)
        journal = _Journal(ctx)
        if ctx.resume:
            earlier = await asyncio.to_thread(self._registered_earlier, ctx.job_id, cfg)
            if earlier is not None:
                journal.log(f"an earlier attempt already registered {pinned(earlier)}")
                return JobResult(outputs=[pinned(earlier)], metrics=dict(earlier.metrics))
            if not cfg.checkpoints.resume_enabled:
                raise exceptions.FailedPrecondition(
                    "the service restarted while the job was running and "
                    "checkpointing.resume_enabled is false"
                )
        base = await asyncio.to_thread(self.cache.resolve, cfg.base_model)
        adapter = None
        if base.kind == registry_pb2.VERSION_KIND_ADAPTER:  # continued: train it on its base
            adapter = base
            base = await asyncio.to_thread(self.cache.resolve, format_ref(adapter.parents[0]))
        dataset = await asyncio.to_thread(self.cache.resolve, cfg.dataset)
        journal.log(
            ("resuming from the newest checkpoint; " if ctx.resume else "")
            + f"pulling {pinned(base)}"
            + (f", {pinned(adapter)} (continued)" if adapter else "")
            + f" and {pinned(dataset)}"
        )
        inputs = InputRefs(
            pinned(base),
            pinned(dataset),
            cfg.dpo.reference,
            cfg.eval_dataset,
            adapter=pinned(adapter) if adapter else "",
        )
        for ref in filter(None, dataclasses.astuple(inputs)):
            await asyncio.to_thread(self.cache.pull, ref)
        # The same place on every attempt: a re-launch resumes from the run found there.
        storage = self.storage.location(ctx.job_id, ctx.work_dir)
        await asyncio.to_thread(self.storage.prepare, storage)
        request = LaunchRequest(
            job_id=ctx.job_id,
            config=cfg,
            inputs=inputs,
            cache=self.worker_cache,
            storage=storage,
        )
        launch = asyncio.ensure_future(asyncio.to_thread(self.launcher.launch, request))
        try:
            result = await self._follow(await asyncio.shield(launch), journal)
        except asyncio.CancelledError:
            journal.log("stopping the workers")
            # To the end, even through a second cancel: the job's folder goes only after.
            await finish_despite_cancel(self._stop(launch))
            if ctx.cancel_requested:  # not a service shutdown, after which the job resumes
                await finish_despite_cancel(asyncio.to_thread(self.storage.discard, storage))
            raise
        checkpoint = await asyncio.to_thread(self._fetch, storage, result, ctx.work_dir)
        return await self._register(ctx, cfg, result, checkpoint, (base, dataset, adapter), journal)

    def _fetch(self, storage: str, result: RunResult, work_dir: Path) -> Path:
        """The result checkpoint as a local folder (downloaded from a URI storage)."""
        try:
            return self.storage.fetch(storage, result.checkpoint, work_dir)
        except OSError as exc:
            raise TrainingFailed(
                f"could not read the result checkpoint from {storage}: {exc}"
            ) from exc

    async def _stop(self, launch: asyncio.Future) -> None:
        """Stops a run, once it has been launched if a cancel came during the launch."""
        try:
            handle = await launch
        except Exception:
            return  # nothing was launched
        await asyncio.to_thread(handle.stop)

    def _registered_earlier(self, job_id: str, cfg: TrainConfig) -> registry_pb2.Version | None:
        """The READY version an interrupted attempt of this job registered, if any.

        The service can die between the registry committing the version and the job
        recording its success; adopting that version keeps it the job's only one. Versions
        an interrupted upload left PENDING are marked FAILED.
        """
        registry = self.cache.registry
        try:
            versions = list(registry.list_versions(model=cfg.output_name, job_id=job_id))
        except exceptions.NotFound:
            return None
        for version in versions:
            if version.state == registry_pb2.VERSION_STATE_PENDING:
                try:
                    registry.fail_version(
                        version.model, version.number, "its upload was interrupted by a restart"
                    )
                except exceptions.ForgelineError:
                    log.warning("could not mark %s FAILED", pinned(version))
        ready = [v for v in versions if v.state == registry_pb2.VERSION_STATE_READY]
        return max(ready, key=lambda v: v.number) if ready else None

    async def _retire(self, push: asyncio.Future) -> None:
        """Waits for an upload a cancel interrupted, then archives the version it made."""
        try:
            version = await push
        except Exception:
            return  # the push marked its version FAILED
        await asyncio.to_thread(self._archive, version)

    def _archive(self, version: registry_pb2.Version) -> None:
        try:
            self.cache.registry.archive_version(pinned(version))
        except exceptions.ForgelineError:
            log.warning("could not archive %s after the job was cancelled", pinned(version))

    async def _follow(self, handle: RunHandle, journal: _Journal) -> RunResult:
        while True:
            done = await asyncio.to_thread(handle.done)
            for event in await asyncio.to_thread(handle.events):
                journal.event(event)
            if done:
                return await asyncio.to_thread(handle.result)
            await asyncio.sleep(POLL_SECONDS)

    async def _register(
        self,
        ctx: JobContext,
        cfg: TrainConfig,
        result: RunResult,
        checkpoint: Path,
        inputs: tuple[registry_pb2.Version, registry_pb2.Version, registry_pb2.Version | None],
        journal: _Journal,
    ) -> JobResult:
        base, dataset, adapter = inputs
        state = TrainState.read(checkpoint)
        final = {
            k: v for k, v in (state.history[-1] if state.history else {}).items() if k != "step"
        }
        metrics = {
            **final,
            "train_steps": float(state.step),
            "train_tokens": float(state.tokens),
            "train_seconds": journal.elapsed(),
        }
        for key in ("peak_rss_bytes", "baseline_rss_bytes", "world_size"):
            if key in result.metrics:
                metrics[key] = result.metrics[key]
        journal.log(f"registering the result as the next version of {cfg.output_name}")
        folder = _stage_output(ctx.work_dir, checkpoint, state, journal)
        base_ref, dataset_ref = pinned(base), pinned(dataset)
        continued = {"continued_from": pinned(adapter)} if adapter else {}

        def register() -> registry_pb2.Version:
            version = push_folder(
                self.cache.registry,
                folder,
                cfg.output_name,
                registry_pb2.VERSION_KIND_ADAPTER
                if cfg.tuner.adapter
                else registry_pb2.VERSION_KIND_MERGED,
                # The base first (adapters are served on parents[0]), then the data it
                # learned, then the adapter it continued.
                parents=(base_ref, dataset_ref, *continued.values()),
                lineage=registry_pb2.Lineage(
                    job_id=ctx.job_id,
                    dataset_digest=dataset.manifest_digest,
                    spec_json=json_format.MessageToJson(ctx.spec, indent=None, sort_keys=True),
                ),
                metrics=metrics,
                metadata={
                    "task": cfg.task.value,
                    "tuner": cfg.tuner.value,
                    "base_model": base_ref,
                    "dataset": dataset_ref,
                    "strategy": cfg.dist.strategy.value,
                    "workers": str(cfg.dist.num_workers),
                    "format": "peft" if cfg.tuner.adapter else "transformers",
                    **continued,
                },
                description=f"{cfg.task.name} {cfg.tuner.name} of {base_ref} on {dataset_ref}"
                + (f", continuing {pinned(adapter)}" if adapter else ""),
            )
            log.info("registered %s", pinned(version))
            return version

        push = asyncio.ensure_future(asyncio.to_thread(register))
        try:
            version = await asyncio.shield(push)
        except asyncio.CancelledError:
            # Cancelled mid-upload: let the upload end, then retire what it produced, to the
            # end even if another cancel arrives meanwhile.
            await finish_despite_cancel(self._retire(push))
            raise
        return JobResult(outputs=[pinned(version)], metrics=metrics)


class _Journal:
    """Turns worker events into job events and keeps the training log on disk."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.path = ctx.work_dir / LOG_FILE
        self.started = time.monotonic()
        self._first: tuple[float, int] | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")
        self.ctx.log(message)

    def event(self, event: tuple) -> None:
        if event[0] == "log":
            self.log(event[1])
            return
        _, step, total, metrics = event
        now = time.monotonic()
        if self._first is None:
            self._first = (now, step)
        t0, s0 = self._first
        rate = (step - s0) / (now - t0) if step > s0 and now > t0 else 0.0
        eta = (total - step) / rate if rate > 0 else 0.0
        self.ctx.metrics(metrics, step)
        self.ctx.progress(step / total if total else 0.0, step, total, eta)
        shown = ", ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if k in ("loss", "rewards/margins")
        )
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"step {step}/{total}: {shown}\n")


def _confined(cfg: TrainConfig, work_dir: Path) -> TrainConfig:
    """The configuration with its DeepSpeed JSON's paths placed under the job's folder.

    Raises:
        InvalidArgument: the JSON has a refused setting or a path leaving the folder.
    """
    if not cfg.dist.deepspeed_overrides:
        return cfg
    overrides = resolve_paths(cfg.dist.deepspeed_overrides, work_dir)
    dist = dataclasses.replace(cfg.dist, deepspeed_overrides=overrides)
    return dataclasses.replace(cfg, dist=dist)


def _stage_output(work_dir: Path, checkpoint: Path, state: TrainState, journal: _Journal) -> Path:
    """The version's folder: the model files plus `training/` (curve CSV and PNG, log)."""
    out = work_dir / "output"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(checkpoint / MODEL_DIR, out, copy_function=_link_or_copy)
    training = out / TRAINING_DIR
    training.mkdir()
    write_curve(state.history, training / "loss_curve.csv", training / "loss_curve.png")
    shutil.copyfile(journal.path, training / LOG_FILE)
    return out


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_curve(history: list[dict[str, float]], csv_path: Path, png_path: Path) -> None:
    """Writes the per-step metrics as CSV and plots the loss (and DPO margin) as PNG."""
    columns = [c for c in CURVE_COLUMNS if any(c in row for row in history)]
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in history:
            writer.writerow([row.get(c, "") for c in columns])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, [row.get("loss", float("nan")) for row in history], label="loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if any("rewards/margins" in row for row in history):
        twin = ax.twinx()
        twin.plot(
            steps,
            [row.get("rewards/margins", float("nan")) for row in history],
            color="tab:orange",
            label="reward margin",
        )
        twin.set_ylabel("reward margin")
        twin.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
