"""The trainer's runner over a fake registry and a fake Ray launcher.

Cancellation: stopping the workers and finishing an interrupted upload run to their end
even when a second cancel arrives meanwhile. Restarts: a job whose earlier attempt
already registered its result adopts that version instead of registering a second one.
DeepSpeed JSON: its paths land in the job's folder before the run is launched. Training
storage: each job gets its own folder there (the same one on every attempt), the result is
read in place from a path and downloaded from a URI, and a cancelled job's folder goes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.refs import parse_ref
from forgeline.trainer import runner as runner_mod
from forgeline.trainer.config import fill_defaults
from forgeline.trainer.launcher import RunResult, TrainingFailed
from forgeline.trainer.recipes.common import MODEL_DIR, TrainState
from forgeline.trainer.runner import TrainRunner
from forgeline.trainer.storage import TrainStorage
from forgeline.v1 import registry_pb2, trainer_pb2

READY = registry_pb2.VERSION_STATE_READY
PENDING = registry_pb2.VERSION_STATE_PENDING


def spec(**distribution) -> trainer_pb2.TrainJobSpec:
    out = trainer_pb2.TrainJobSpec(
        task=trainer_pb2.TRAIN_TASK_SFT,
        base_model=parse_ref("base:1"),
        dataset=parse_ref("facts:1"),
        output_name="out",
    )
    for key, value in distribution.items():
        setattr(out.distribution, key, value)
    return fill_defaults(out)


@dataclass
class Ctx:
    """What the runner reads of a `JobContext`."""

    work_dir: Path
    spec: trainer_pb2.TrainJobSpec
    attempt: int = 1
    job_id: str = "job-1"
    cancel_requested: bool = False
    logs: list[str] = field(default_factory=list)

    @property
    def resume(self) -> bool:
        return self.attempt > 1

    def log(self, message: str, level: int = 0) -> None:
        self.logs.append(message)

    def metrics(self, values, step=0) -> None:
        pass

    def progress(self, fraction, step=0, total_steps=0, eta=0.0) -> None:
        pass


class FakeRegistry:
    def __init__(self, versions: list[registry_pb2.Version] = ()):
        self.versions = list(versions)
        self.archived: list[str] = []
        self.failed: list[int] = []

    def list_versions(self, *, model="", job_id="", **_):
        return [
            v for v in reversed(self.versions) if v.model == model and v.lineage.job_id == job_id
        ]

    def archive_version(self, ref) -> None:
        self.archived.append(ref)

    def fail_version(self, model: str, number: int, reason: str) -> None:
        self.failed.append(number)


class FakeCache:
    def __init__(self, registry: FakeRegistry):
        self.registry = registry

    def resolve(self, ref: str) -> registry_pb2.Version:
        name = ref.split(":")[0]
        return registry_pb2.Version(model=name, number=1, manifest_digest=f"digest-{name}")

    def pull(self, ref: str) -> None:
        pass


class FakeHandle:
    """A run that ends on its own (`finished`) or is stopped, slowly."""

    def __init__(self, checkpoint: str | None, stop_seconds: float):
        self.checkpoint = checkpoint
        self.stop_seconds = stop_seconds
        self.stop_started = threading.Event()
        self.stop_finished = threading.Event()

    def done(self) -> bool:
        return self.checkpoint is not None or self.stop_finished.is_set()

    def events(self) -> list[tuple]:
        return []

    def result(self) -> RunResult:
        return RunResult(self.checkpoint, {"world_size": 1.0})

    def stop(self) -> None:
        self.stop_started.set()
        time.sleep(self.stop_seconds)
        self.stop_finished.set()


class FakeLauncher:
    def __init__(
        self,
        checkpoint: str | None = None,
        stop_seconds: float = 1.0,
        allowed: bool = True,
        launch_seconds: float = 0.0,
    ):
        self.handle = FakeHandle(checkpoint, stop_seconds)
        self.allowed = allowed
        self.launch_seconds = launch_seconds
        self.requests = []

    def launch(self, request) -> FakeHandle:
        self.requests.append(request)
        assert self.allowed, "nothing should have been launched"
        time.sleep(self.launch_seconds)
        return self.handle


def final_checkpoint(folder: Path) -> str:
    (folder / MODEL_DIR).mkdir(parents=True)
    (folder / MODEL_DIR / "adapter_model.safetensors").write_bytes(b"weights")
    TrainState(
        step=2, tokens=10, history=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]
    ).write(folder)
    return str(folder)


def make_runner(
    launcher: FakeLauncher, registry: FakeRegistry | None = None, storage: str = ""
) -> TrainRunner:
    return TrainRunner(FakeCache(registry or FakeRegistry()), launcher, None, TrainStorage(storage))


def job_dir(tmp_path: Path) -> Path:
    """The job's folder, as the job machinery makes it."""
    folder = tmp_path / "job"
    folder.mkdir(exist_ok=True)
    return folder


async def wait_for(event: threading.Event, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_a_second_cancel_does_not_cut_the_workers_stop_short(tmp_path):
    launcher = FakeLauncher(stop_seconds=1.0)
    task = asyncio.create_task(make_runner(launcher).run(Ctx(tmp_path, spec())))
    while not launcher.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    await wait_for(launcher.handle.stop_started)
    task.cancel()  # during the first one's stop
    with pytest.raises(asyncio.CancelledError):
        await task
    assert launcher.handle.stop_finished.is_set()


async def test_a_cancel_during_the_launch_stops_what_was_launched(tmp_path):
    launcher = FakeLauncher(stop_seconds=0.2, launch_seconds=0.5)
    task = asyncio.create_task(make_runner(launcher).run(Ctx(tmp_path, spec())))
    while not launcher.requests:
        await asyncio.sleep(0.01)
    task.cancel()  # the run is being started on Ray
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert launcher.handle.stop_finished.is_set()


async def test_a_second_cancel_during_the_upload_still_archives_the_version(tmp_path, monkeypatch):
    pushed = threading.Event()
    started = threading.Event()

    def slow_push(registry, folder, model, kind, **options) -> registry_pb2.Version:
        started.set()
        time.sleep(1.0)
        pushed.set()
        return registry_pb2.Version(model=model, number=7, state=READY)

    monkeypatch.setattr(runner_mod, "push_folder", slow_push)
    registry = FakeRegistry()
    launcher = FakeLauncher(checkpoint=final_checkpoint(tmp_path / "checkpoint"))
    task = asyncio.create_task(make_runner(launcher, registry).run(Ctx(job_dir(tmp_path), spec())))
    await wait_for(started)
    task.cancel()
    await asyncio.sleep(0.1)
    task.cancel()  # while the first cancel waits for the upload
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pushed.is_set()
    assert registry.archived == ["out:7"]


async def test_a_resumed_job_adopts_the_version_its_earlier_attempt_registered(tmp_path):
    lineage = registry_pb2.Lineage(job_id="job-1")
    registry = FakeRegistry(
        [
            registry_pb2.Version(model="out", number=1, state=PENDING, lineage=lineage),
            registry_pb2.Version(
                model="out", number=2, state=READY, lineage=lineage, metrics={"loss": 0.5}
            ),
            registry_pb2.Version(
                model="out", number=3, state=READY, lineage=registry_pb2.Lineage(job_id="job-2")
            ),
        ]
    )
    launcher = FakeLauncher(allowed=False)
    result = await make_runner(launcher, registry).run(Ctx(tmp_path, spec(), attempt=2))
    assert result.outputs == ["out:2"] and result.metrics == {"loss": 0.5}
    assert launcher.requests == []  # nothing trained again
    assert registry.failed == [1]  # the interrupted upload's leftover


async def test_deepspeed_paths_land_in_the_jobs_folder(tmp_path):
    config = {"tensorboard": {"enabled": True, "output_path": "tb", "job_name": "run"}}
    ds = spec(
        strategy=trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED,
        deepspeed_config_json=json.dumps(config),
    )
    launcher = FakeLauncher(stop_seconds=0)
    task = asyncio.create_task(make_runner(launcher).run(Ctx(tmp_path, ds)))
    while not launcher.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    overrides = launcher.requests[0].config.dist.deepspeed_overrides
    assert overrides["tensorboard"] == {
        "enabled": True,
        "output_path": str(tmp_path.resolve() / "deepspeed" / "tb"),
        "job_name": "run",
    }


async def test_a_stored_spec_with_refused_deepspeed_settings_fails_before_launch(tmp_path):
    config = {"flops_profiler": {"enabled": True, "output_file": "/etc/cron.d/x"}}
    ds = spec(
        strategy=trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED,
        deepspeed_config_json=json.dumps(config),
    )
    launcher = FakeLauncher(allowed=False)
    with pytest.raises(exceptions.InvalidArgument) as info:
        await make_runner(launcher).run(Ctx(tmp_path, ds))
    assert info.value.violations[0].field == (
        "spec.distribution.deepspeed_config_json.flops_profiler.output_file"
    )
    assert launcher.requests == []


@pytest.fixture
def pushed(monkeypatch) -> dict[str, bytes]:
    """The files (relative path -> bytes) of the folder the runner registers."""
    files: dict[str, bytes] = {}

    def push(registry, folder, model, kind, **options) -> registry_pb2.Version:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                files[path.relative_to(folder).as_posix()] = path.read_bytes()
        return registry_pb2.Version(model=model, number=1, state=READY)

    monkeypatch.setattr(runner_mod, "push_folder", push)
    return files


async def test_a_shared_storage_gives_each_job_its_folder_and_is_read_in_place(tmp_path, pushed):
    shared = tmp_path / "shared"
    checkpoint = final_checkpoint(shared / "job-1" / "run" / "checkpoint_000001")
    launcher = FakeLauncher(checkpoint=checkpoint)
    runner = make_runner(launcher, storage=str(shared))
    result = await runner.run(Ctx(job_dir(tmp_path), spec()))
    assert launcher.requests[0].storage == str(shared / "job-1")
    assert result.outputs == ["out:1"] and result.metrics["train_steps"] == 2.0
    assert pushed["adapter_model.safetensors"] == b"weights"
    assert "training/loss_curve.csv" in pushed
    assert not (tmp_path / "job" / "checkpoint").exists()  # nothing downloaded
    # A later attempt (the service restarted) launches on the same folder, to resume there.
    await runner.run(Ctx(job_dir(tmp_path), spec(), attempt=2))
    assert launcher.requests[1].storage == launcher.requests[0].storage


async def test_a_uri_storage_downloads_the_result_first(tmp_path, pushed):
    shared = tmp_path / "bucket"
    # What Ray Train reports for a URI storage: the path on its filesystem, no scheme.
    checkpoint = final_checkpoint(shared / "job-1" / "run" / "checkpoint_000001")
    launcher = FakeLauncher(checkpoint=checkpoint)
    await make_runner(launcher, storage=f"file://{shared}").run(Ctx(job_dir(tmp_path), spec()))
    assert launcher.requests[0].storage == f"file://{shared}/job-1"
    downloaded = tmp_path / "job" / "checkpoint"
    assert (downloaded / MODEL_DIR / "adapter_model.safetensors").read_bytes() == b"weights"
    assert pushed["adapter_model.safetensors"] == b"weights"


async def test_a_result_missing_from_the_storage_fails_the_job_saying_what_to_set(tmp_path):
    # On another machine's disk, as with a path that is not shared.
    launcher = FakeLauncher(checkpoint=str(tmp_path / "elsewhere" / "checkpoint_000001"))
    with pytest.raises(TrainingFailed, match="FORGELINE_TRAIN_STORAGE"):
        await make_runner(launcher, storage=str(tmp_path / "shared")).run(
            Ctx(job_dir(tmp_path), spec())
        )


@pytest.mark.parametrize("cancelled", [True, False])
async def test_a_cancelled_jobs_storage_goes_a_shutdowns_stays(tmp_path, cancelled):
    shared = tmp_path / "shared"
    launcher = FakeLauncher(stop_seconds=0)
    ctx = Ctx(job_dir(tmp_path), spec(), cancel_requested=cancelled)
    task = asyncio.create_task(make_runner(launcher, storage=str(shared)).run(ctx))
    while not launcher.requests:
        await asyncio.sleep(0.01)
    (shared / "job-1" / "run").mkdir(parents=True)  # what the run wrote
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (shared / "job-1").exists() is not cancelled
