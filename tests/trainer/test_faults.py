"""Faults with real processes: a SIGKILLed trainer service, a SIGKILLed Ray worker.

The registry and the trainer run as `forgeline serve` processes sharing one home; the
trainer starts its own local Ray, so its Ray processes and the training workers are its
descendants. Every job is tiny (a few steps of a rank-4 adapter on short sequences) so
each test takes a few minutes on two CPU cores.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import TrainerClient
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder
from forgeline.v1 import common_pb2, registry_pb2, trainer_pb2
from tests.helpers import ServiceProcess, start_service, wait_for
from tests.trainer.datasets import facts_rows, write_jsonl
from tests.trainer.test_e2e import BASE, small_spec

pytestmark = pytest.mark.e2e

READY = registry_pb2.VERSION_STATE_READY
PENDING = registry_pb2.VERSION_STATE_PENDING
ENDED = (
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
)
JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def env(home, bundled_model) -> Iterator[dict[str, str]]:
    """The environment of both services; the registry runs for the whole module."""
    base = {
        **os.environ,
        "FORGELINE_HOME": str(home),
        "FORGELINE_CACHE_DIR": str(home / "cache"),
        "FORGELINE_RAY_ADDRESS": "",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    registry = start_service("registry", base, home / "registry.log")
    try:
        with RegistryClient(registry.address, ChannelOptions(retries=False)) as client:
            push_folder(client, bundled_model, BASE, registry_pb2.VERSION_KIND_BASE)
            facts = write_jsonl(home / "facts.jsonl", facts_rows())
            push_file(client, facts, "facts", registry_pb2.VERSION_KIND_DATASET)
        yield {**base, "FORGELINE_REGISTRY_ADDRESS": registry.address}
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            registry.stop(30)


@contextmanager
def trainer_service(env: dict[str, str], log: Path) -> Iterator[ServiceProcess]:
    """`forgeline serve trainer`, stopped afterwards unless the test killed it."""
    service = start_service("trainer", env, log)
    try:
        yield service
    finally:
        if service.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.stop(60)


def descendants(service: ServiceProcess) -> list[psutil.Process]:
    """The service's live descendants: its Ray's processes and the training workers."""
    try:
        return psutil.Process(service.proc.pid).children(recursive=True)
    except psutil.Error:
        return []


def named(processes: list[psutil.Process], *names: str) -> list[psutil.Process]:
    """Those of `processes` whose command line names one of `names`."""
    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if any(name in " ".join(process.cmdline()) for name in names):
                found.append(process)
    return found


def sigkill(service: ServiceProcess) -> None:
    """SIGKILLs the service; the run it drove (controller, workers) must die with it."""
    children = descendants(service)
    service.kill()
    run = named(children, "RayTrainWorker", "TrainController", "ray::_fit")
    _, alive = psutil.wait_procs(run, timeout=30)
    assert not alive, f"the run outlived its service: {alive}"
    for leftover in children:  # Ray's node agents linger a while; not what is under test
        with contextlib.suppress(psutil.Error):
            leftover.kill()


def trainer(service: ServiceProcess) -> TrainerClient:
    return TrainerClient(service.address, ChannelOptions(retries=False))


def registry(env: dict[str, str]) -> RegistryClient:
    return RegistryClient(env["FORGELINE_REGISTRY_ADDRESS"], ChannelOptions(retries=False))


def spec(output: str, **hyper) -> trainer_pb2.TrainJobSpec:
    out = small_spec(trainer_pb2.TRAIN_TASK_SFT, "facts:1", output, **hyper)
    out.checkpointing.save_every_steps = 3
    return out


def wait_until(client: TrainerClient, job_id: str, what) -> int:
    """Follows the job's events until `what(event)`; returns that event's sequence number."""
    for event in client.watch(job_id):
        if what(event):
            return event.seq
    raise AssertionError(f"{job_id} ended first: {client.get(job_id)[0].error}")


def at_step(step: int):
    return lambda e: e.WhichOneof("payload") == "progress" and e.progress.step >= step


def log_says(text: str):
    return lambda e: e.WhichOneof("payload") == "log" and text in e.log.message


def final_state(client: TrainerClient, job_id: str) -> common_pb2.Job:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        job = client.get(job_id)[0]
        if job.state in ENDED:
            return job
        assert time.monotonic() < deadline, f"{job_id} still {job.state} (a hang)"
        time.sleep(1)


def versions_of(env: dict[str, str], model: str, job_id: str) -> list[registry_pb2.Version]:
    with registry(env) as client, contextlib.suppress(exceptions.NotFound):
        return list(client.list_versions(model=model, job_id=job_id))
    return []  # the model does not exist yet


def assert_one_intact_version(env, home, model: str, job: common_pb2.Job) -> None:
    """The job's single READY version is whole: every file there and matching its digest."""
    versions = versions_of(env, model, job.id)
    ready = [v for v in versions if v.state == READY]
    assert len(ready) == 1, [(v.number, v.state) for v in versions]
    assert [(o.name, o.version) for o in job.outputs] == [(model, ready[0].number)]
    with registry(env) as client:
        pulled = VersionCache(client, home / "verify").pull(f"{model}:{ready[0].number}").path
    assert (pulled / "adapter_model.safetensors").stat().st_size > 10_000
    assert (pulled / "training" / "loss_curve.csv").exists()


def test_a_killed_trainer_resumes_the_job_from_its_checkpoint(env, home):
    with trainer_service(env, home / "trainer-1.log") as first, trainer(first) as client:
        job = client.submit(spec("resumed", max_steps=8))
        seen = wait_until(client, job.id, at_step(5))  # well past the step-3 checkpoint
        sigkill(first)
    with trainer_service(env, home / "trainer-2.log") as second, trainer(second) as client:
        final = final_state(client, job.id)
        later = list(client.watch(job.id, after_seq=seen))
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error + second.output()[-3000:]
    assert final.attempt == 2
    logs = [e.log.message for e in later if e.WhichOneof("payload") == "log"]
    resumed = [i for i, e in enumerate(later) if "resumed from the checkpoint" in e.log.message]
    assert resumed, logs
    resumed_at = int(later[resumed[0]].log.message.rsplit(" ", 1)[1])
    steps = [e.progress.step for e in later[resumed[0] :] if e.WhichOneof("payload") == "progress"]
    assert resumed_at in (3, 6)
    assert steps == list(range(resumed_at + 1, 9))  # on from the checkpoint, none twice
    assert_one_intact_version(env, home, "resumed", final)


def first_version_listed(env: dict[str, str], model: str, job_id: str) -> None:
    """Waits until the registry lists a version of the job (PENDING once the upload began)."""
    wait_for(lambda: versions_of(env, model, job_id), timeout=120, interval=0.01)


@pytest.mark.parametrize("when", ["registering-logged", "version-listed"])
def test_a_trainer_killed_while_registering_leaves_one_whole_version(env, home, when):
    model = f"registered-{when}"
    with trainer_service(env, home / f"{when}-1.log") as first, trainer(first) as client:
        job = client.submit(spec(model, max_steps=3))
        wait_until(client, job.id, log_says("registering the result"))
        if when == "version-listed":
            first_version_listed(env, model, job.id)
        sigkill(first)
    before = {v.number: v.state for v in versions_of(env, model, job.id)}
    with trainer_service(env, home / f"{when}-2.log") as second, trainer(second) as client:
        final = final_state(client, job.id)
        logs = [e.log.message for e in client.watch(job.id) if e.WhichOneof("payload") == "log"]
    # The kill may land before the upload, during it, or after its commit: each must end
    # in one whole READY version, nothing left PENDING.
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, (before, final.error, logs)
    assert final.attempt == 2
    assert_one_intact_version(env, home, model, final)
    after = {v.number: v.state for v in versions_of(env, model, job.id)}
    assert PENDING not in after.values(), (before, after)
    if READY in before.values():
        assert any("already registered" in m for m in logs), logs
        assert after == before  # adopted, not registered again


def test_a_killed_ray_worker_fails_the_job_with_a_reason(env, home):
    with trainer_service(env, home / "trainer-5.log") as service, trainer(service) as client:
        job = client.submit(spec("worker-killed", max_steps=200))
        wait_until(client, job.id, at_step(1))
        wait_for(lambda: named(descendants(service), "RayTrainWorker"), timeout=30)
        for worker in named(descendants(service), "RayTrainWorker"):
            worker.kill()
        final = final_state(client, job.id)  # fails or resumes; never hangs
        assert service.proc.poll() is None  # the service itself is fine
        if final.state == common_pb2.JOB_STATE_FAILED:
            assert "worker" in final.error.lower(), final.error  # says what went wrong
        else:
            assert final.state == common_pb2.JOB_STATE_SUCCEEDED
            assert_one_intact_version(env, home, "worker-killed", final)
        # And the service trains the next job as usual.
        after = client.submit(spec("after-the-kill", max_steps=2))
        again = final_state(client, after.id)
    assert again.state == common_pb2.JOB_STATE_SUCCEEDED, again.error
