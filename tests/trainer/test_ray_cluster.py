"""The trainer on a Ray cluster it joins: two `ray start` nodes on this machine.

A head and a worker node of one CPU each, every Ray process of a node a descendant of its
`ray start --block`, which the finalizers stop (and kill what is left of its process tree),
so no other Ray on the machine is touched. The registry and the trainer run as `forgeline
serve` processes; the trainer joins the head with `FORGELINE_RAY_ADDRESS` and keeps
checkpoints in a shared folder (`FORGELINE_TRAIN_STORAGE`). A two-worker job needs both
nodes' CPU: it trains and registers its result, resumes from the shared folder after the
trainer is killed, or fails with the reason when the worker node dies.

The nodes run with the tests' `PYTHONPATH` (as a real cluster needs forgeline installed on
every node) and without the workers' environment variables, which must come from the
job's runtime environment. The cluster uses Ray's token authentication, with a token of
its own that the nodes and the trainer get through Ray's `RAY_AUTH_*` variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from forgeline.client.cache import VersionCache
from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import TrainerClient
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder
from forgeline.common.ray_cluster import WORKER_ENV
from forgeline.common.ray_node import RayNode, launch_ray_node
from forgeline.v1 import common_pb2, registry_pb2, trainer_pb2
from tests.helpers import ServiceProcess, start_service, wait_for
from tests.trainer.datasets import facts_rows, write_jsonl
from tests.trainer.test_e2e import BASE, small_spec

pytestmark = pytest.mark.e2e

NODE_START_SECONDS = 180
JOB_TIMEOUT = 300
FAIL_WITHIN = 180  # from killing a node to the job's end
# Ray asks for a token only where a token file exists (~/.ray/auth_token) or the mode is
# set; set both, so the cluster is the same on every machine.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
ENDED = (
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
)


def train_workers(node: RayNode) -> list[psutil.Process]:
    """The node's Ray Train workers (named so by Ray once they run)."""
    found = []
    for process in node.processes():
        with contextlib.suppress(psutil.Error):
            if "RayTrainWorker" in " ".join(process.cmdline()):
                found.append(process)
    return found


def node_env() -> dict[str, str]:
    """The nodes' environment: the tests' own (PYTHONPATH included), less the workers'
    variables, so that finding those in a worker proves the job's runtime environment."""
    env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV}
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    return {**env, **RAY_AUTH}


def start_node(head: str = "") -> RayNode:
    """Starts a one-CPU node: the head when `head` is empty, else a node joining it."""
    node = launch_ray_node(
        node_env(), head=head, num_cpus=1, num_gpus=0, object_store_bytes=256 * 2**20
    )
    return node.wait_started(NODE_START_SECONDS)


@dataclass
class Suite:
    """The head node, a registry and a trainer joined to the head, sharing one home."""

    home: Path
    storage: Path
    head: RayNode
    registry: ServiceProcess
    trainer_env: dict[str, str]
    trainer: ServiceProcess | None = None
    trainers: int = 0

    def start_trainer(self) -> None:
        """Starts a trainer process (another one after a kill), joined to the head."""
        self.trainers += 1
        log = self.home / f"trainer-{self.trainers}.log"
        self.trainer = start_service("trainer", self.trainer_env, log)

    def stop_trainer(self) -> None:
        if self.trainer is not None and self.trainer.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.trainer.stop(60)

    def trainer_client(self) -> TrainerClient:
        return TrainerClient(self.trainer.address, ChannelOptions(retries=False))

    def registry_client(self) -> RegistryClient:
        return RegistryClient(self.registry.address, ChannelOptions(retries=False))


@pytest.fixture(scope="module")
def suite(tmp_path_factory, bundled_model) -> Iterator[Suite]:
    home = tmp_path_factory.mktemp("home")
    storage = tmp_path_factory.mktemp("shared-storage")
    head = start_node()
    registry: ServiceProcess | None = None
    suite: Suite | None = None
    try:
        env = {
            **os.environ,
            "FORGELINE_HOME": str(home),
            "FORGELINE_CACHE_DIR": str(home / "cache"),
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        registry = start_service("registry", env, home / "registry.log")
        with RegistryClient(registry.address, ChannelOptions(retries=False)) as client:
            push_folder(client, bundled_model, BASE, registry_pb2.VERSION_KIND_BASE)
            facts = write_jsonl(home / "facts.jsonl", facts_rows())
            push_file(client, facts, "facts", registry_pb2.VERSION_KIND_DATASET)
        trainer_env = {
            **env,
            "FORGELINE_REGISTRY_ADDRESS": registry.address,
            "FORGELINE_RAY_ADDRESS": head.address,
            "FORGELINE_TRAIN_STORAGE": str(storage),
            **RAY_AUTH,
        }
        suite = Suite(home, storage, head, registry, trainer_env)
        suite.start_trainer()
        yield suite
    finally:
        if suite is not None:  # the trainer first: it is a driver of the head
            suite.stop_trainer()
        if registry is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                registry.stop(60)
        head.stop()


@pytest.fixture
def worker_node(suite) -> Iterator[RayNode]:
    """A second node joined to the head, stopped after the test whatever happened."""
    node = start_node(suite.head.address)
    try:
        yield node
    finally:
        node.stop()


def spec(output: str, max_steps: int) -> trainer_pb2.TrainJobSpec:
    """Two DDP workers of one CPU each: one per node."""
    out = small_spec(trainer_pb2.TRAIN_TASK_SFT, "facts:1", output, max_steps=max_steps)
    out.checkpointing.save_every_steps = 2
    out.distribution.strategy = trainer_pb2.DISTRIBUTION_STRATEGY_DDP
    out.distribution.resources.num_workers = 2
    out.distribution.resources.cpus_per_worker = 1
    return out


def wait_for_step(client: TrainerClient, job_id: str, step: int) -> None:
    for event in client.watch(job_id):
        if event.WhichOneof("payload") == "progress" and event.progress.step >= step:
            return
    raise AssertionError(f"{job_id} ended first: {client.get(job_id)[0].error}")


def ended(client: TrainerClient, job_id: str, within: float) -> common_pb2.Job:
    deadline = time.monotonic() + within
    while True:
        job = client.get(job_id)[0]
        if job.state in ENDED:
            return job
        assert time.monotonic() < deadline, f"{job_id} still {job.state} after {within}s (a hang)"
        time.sleep(1)


def snapshot_has_checkpoint(location: Path) -> bool:
    """Whether the run's snapshot in the job's storage names a checkpoint to resume from."""
    try:
        snapshot = json.loads((location / "run" / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):  # not written yet, or being written
        return False
    return bool(snapshot.get("latest_checkpoint_result"))


def test_a_two_node_job_trains_on_both_nodes_and_registers_its_result(suite, worker_node):
    with suite.trainer_client() as client:
        job = client.submit(spec("two-nodes", max_steps=6))
        wait_for_step(client, job.id, 1)
        # One worker per node; each has the job's environment, which no node was given.
        workers = {}
        for name, node in (("head", suite.head), ("worker node", worker_node)):
            wait_for(lambda node=node: train_workers(node), timeout=30, interval=0.1)
            workers[name] = train_workers(node)
        for process in (p for found in workers.values() for p in found):
            env = process.environ()
            assert {k: env.get(k) for k in WORKER_ENV} == WORKER_ENV, process.pid
        final = ended(client, job.id, JOB_TIMEOUT)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, (
        final.error + suite.trainer.output()[-3000:]
    )
    with suite.registry_client() as registry:
        version = registry.get_version(f"two-nodes:{final.outputs[0].version}")
        assert version.state == registry_pb2.VERSION_STATE_READY
        assert version.metadata["workers"] == "2" and version.metrics["world_size"] == 2
        assert version.metrics["train_steps"] == 6
        pulled = VersionCache(registry, suite.home / "verify").pull(f"two-nodes:{version.number}")
    assert (pulled.path / "adapter_model.safetensors").stat().st_size > 10_000
    assert (pulled.path / "adapter_config.json").exists()
    assert (pulled.path / "training" / "loss_curve.csv").read_text().count("\n") >= 2
    # The checkpoints went to the shared storage, in the job's folder, not the trainer's.
    run = suite.storage / job.id / "run"
    assert sorted(p.name for p in run.glob("checkpoint_*")), list(run.iterdir())
    assert not (suite.home / "trainer" / "jobs" / job.id / "ray").exists()


def test_a_killed_trainer_resumes_the_job_from_the_shared_storage(suite, worker_node):
    with suite.trainer_client() as client:
        job = client.submit(spec("resumed", max_steps=8))
        wait_for_step(client, job.id, 3)  # past the step-2 checkpoint
        # Ray Train records it in the run's snapshot, what a re-launch restores, a little
        # after the workers reported it.
        wait_for(lambda: snapshot_has_checkpoint(suite.storage / job.id), timeout=60)
    suite.trainer.kill()  # its job's workers on both nodes go with it, as its driver
    suite.start_trainer()
    with suite.trainer_client() as client:
        final = ended(client, job.id, JOB_TIMEOUT)
        logs = [e.log.message for e in client.watch(job.id) if e.WhichOneof("payload") == "log"]
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error + str(logs)
    assert final.attempt == 2
    resumed = [m for m in logs if "resumed from the checkpoint" in m]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) in (2, 4, 6), logs
    with suite.registry_client() as registry:
        version = registry.get_version(f"resumed:{final.outputs[0].version}")
    assert version.metrics["train_steps"] == 8 and version.metrics["world_size"] == 2


def test_a_job_whose_worker_node_dies_fails_with_a_reason(suite, worker_node):
    with suite.trainer_client() as client:
        job = client.submit(spec("node-lost", max_steps=200))
        wait_for_step(client, job.id, 1)
        wait_for(lambda: train_workers(worker_node), timeout=30, interval=0.1)
        worker_node.kill()
        final = ended(client, job.id, FAIL_WITHIN)  # never hangs on the lost node
    assert final.state == common_pb2.JOB_STATE_FAILED, final.state
    assert final.error.startswith("a Ray worker or the node it ran on was lost: "), final.error
    assert suite.trainer.proc.poll() is None  # the service itself is fine
