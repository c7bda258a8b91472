"""The user's path of a training job: running registry and trainer, a job through the SDK.

Starts `forgeline serve registry` and `forgeline serve trainer` as real processes on a
temporary home, registers the bundled SmolLM2 and the dataset, then submits SFT jobs and
times each from submission to the registered version. Tokens and the workers' peak memory
come from the version's metrics; the job log (with the service's timestamps) is kept, so
where the time went can be read from it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from forgeline.client import ChannelOptions, RegistryClient, TrainerClient
from forgeline.client.refs import parse_ref
from forgeline.client.transfer import push_file, push_folder
from forgeline.common.bundled import import_bundled
from forgeline.common.processes import start_service
from forgeline.v1 import common_pb2, registry_pb2, trainer_pb2

BASE = "smol"
DATASET = "bench-chats"


@dataclass(frozen=True)
class Recipe:
    """The settings both sides of the comparison train with."""

    rank: int
    batch: int
    max_len: int
    steps: int
    lr: float


def spec_for(recipe: Recipe, output: str, **hyper: object) -> trainer_pb2.TrainJobSpec:
    """An SFT LoRA spec on every linear layer; `hyper` overrides hyper-parameters."""
    spec = trainer_pb2.TrainJobSpec(
        task=trainer_pb2.TRAIN_TASK_SFT,
        base_model=parse_ref(BASE),
        dataset=parse_ref(DATASET),
        output_name=output,
        lora=trainer_pb2.LoraConfig(rank=recipe.rank, alpha=2 * recipe.rank),
        hyper_parameters=trainer_pb2.HyperParameters(
            max_steps=recipe.steps,
            learning_rate=recipe.lr,
            lr_scheduler=trainer_pb2.LR_SCHEDULER_LINEAR,
            per_device_batch_size=recipe.batch,
            max_seq_length=recipe.max_len,
        ),
    )
    for key, value in hyper.items():
        setattr(spec.hyper_parameters, key, value)
    return spec


def run_jobs(dataset: Path, work: Path, jobs: dict[str, trainer_pb2.TrainJobSpec]) -> dict:
    """Runs each spec through the services, one after another; returns a row per job."""
    env = {**os.environ, "FORGELINE_HOME": str(work / "home")}
    registry_proc = start_service("registry", env, work / "registry.log")
    env["FORGELINE_REGISTRY_ADDRESS"] = registry_proc.address
    trainer_proc = start_service("trainer", env, work / "trainer.log")
    rows = {}
    try:
        options = ChannelOptions()
        with (
            RegistryClient(registry_proc.address, options) as registry,
            TrainerClient(trainer_proc.address, options) as trainer,
        ):
            push_folder(registry, import_bundled(), BASE, registry_pb2.VERSION_KIND_BASE)
            push_file(registry, dataset, DATASET, registry_pb2.VERSION_KIND_DATASET)
            for name, spec in jobs.items():
                started = time.perf_counter()
                job = trainer.submit(spec)
                log = [
                    f"{time.perf_counter() - started:7.1f}s {event.log.message}"
                    for event in trainer.watch(job.id)
                    if event.HasField("log")
                ]
                seconds = time.perf_counter() - started
                final = trainer.get(job.id)[0]
                if final.state != common_pb2.JOB_STATE_SUCCEEDED:
                    raise RuntimeError(f"{name}: {final.error}")
                metrics = dict(registry.get_version(final.outputs[0]).metrics)
                rows[name] = {
                    "tokens": int(metrics["train_tokens"]),
                    "seconds": seconds,
                    "train_seconds": metrics["train_seconds"],
                    "final_loss": metrics["loss"],
                    "peak_rss": int(metrics["peak_rss_bytes"]),
                    "log": log,
                }
    finally:
        trainer_proc.stop()
        registry_proc.stop()
    return rows
