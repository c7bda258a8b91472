"""The shared job machinery behind a real job service: submit, watch, cancel, restart."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import TrainerClient
from forgeline.common.jobs import JobManager, JobStore
from forgeline.trainer.service import create_server
from forgeline.v1 import common_pb2, trainer_pb2
from tests.common.fakes import AcceptingPlanner, GatedRunner, SlowCleanupRunner
from tests.conftest import ServerThread, serving

pytestmark = pytest.mark.integration

SPEC = trainer_pb2.TrainJobSpec(labels={"team": "law"})


def trainer_server(settings, runner):
    return create_server(settings, planner=AcceptingPlanner(), runner=runner)[0]


def start(settings, runner) -> ServerThread:
    return ServerThread(lambda: trainer_server(settings, runner)).start()


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def client(server: ServerThread) -> TrainerClient:
    return TrainerClient(server.address, ChannelOptions(retries=False))


def test_submit_runs_and_watch_replays_everything(settings_for):
    runner = GatedRunner(steps=3)
    with serving(lambda: trainer_server(settings_for("trainer"), runner)) as server:
        trainer = client(server)
        job = trainer.submit(SPEC)
        assert job.state == common_pb2.JOB_STATE_QUEUED
        final = trainer.wait(job.id)
        events = list(trainer.watch(job.id))
        again, spec = trainer.get(job.id)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED
    assert [e.seq for e in events] == list(range(1, final.last_event_seq + 1))
    states = [e.state.state for e in events if e.WhichOneof("payload") == "state"]
    assert states == [
        common_pb2.JOB_STATE_QUEUED,
        common_pb2.JOB_STATE_RUNNING,
        common_pb2.JOB_STATE_SUCCEEDED,
    ]
    assert [e.progress.step for e in events if e.HasField("progress")] == [1, 2, 3]
    assert final.metrics["final_loss"] == 0.25 and final.metrics["loss"] == pytest.approx(1 / 3)
    assert [o.name for o in final.outputs] == ["law-adapter"] and final.outputs[0].version == 1
    assert again.labels == {"team": "law"} and spec == SPEC


def test_watch_reconnecting_with_last_seq_gets_each_later_event_once(settings_for):
    runner = GatedRunner(steps=6, pause_at=4)
    with serving(lambda: trainer_server(settings_for("trainer"), runner)) as server:
        trainer = client(server)
        job = trainer.submit(SPEC)
        runner.paused.wait(20)
        first = []
        for event in trainer.watch(job.id):
            first.append(event)
            if len(first) == 5:
                break  # the client goes away mid-stream
        runner.release.set()
        rest = list(trainer.watch(job.id, after_seq=first[-1].seq))
        total = trainer.get(job.id)[0].last_event_seq
    seqs = [e.seq for e in first + rest]
    assert seqs == list(range(1, total + 1))
    assert rest[-1].state.state == common_pb2.JOB_STATE_SUCCEEDED


def test_cancel_running_and_queued_jobs(settings_for):
    runner = GatedRunner(steps=3, pause_at=2)
    with serving(lambda: trainer_server(settings_for("trainer"), runner)) as server:
        trainer = client(server)
        running = trainer.submit(SPEC)
        queued = trainer.submit(SPEC)
        runner.paused.wait(20)
        assert trainer.get(queued.id)[0].state == common_pb2.JOB_STATE_QUEUED
        trainer.cancel(queued.id, "not needed")
        trainer.cancel(running.id)
        ended = trainer.wait(running.id)
        assert runner.cancelled.is_set()
        assert ended.state == common_pb2.JOB_STATE_CANCELLED
        assert not ended.outputs
        q = trainer.get(queued.id)[0]
        assert (q.state, q.error) == (common_pb2.JOB_STATE_CANCELLED, "not needed")
        assert len(runner.attempts) == 1  # the cancelled queued job never ran
        with pytest.raises(exceptions.FailedPrecondition) as info:
            trainer.cancel(running.id)
        assert "already ended" in info.value.message


def test_a_second_cancel_waits_for_the_first_ones_cleanup(settings_for):
    runner = SlowCleanupRunner(cleanup_seconds=1.0)
    with serving(lambda: trainer_server(settings_for("trainer"), runner)) as server:
        trainer = client(server)
        job = trainer.submit(SPEC)
        assert runner.started.wait(20)
        work_dir = server.server.components["jobs"].work_root / job.id
        assert work_dir.is_dir()
        first = trainer.cancel(job.id, "first")
        assert runner.cleanup_started.wait(20)
        second = trainer.cancel(job.id, "second")  # during the first one's cleanup
        assert second.state == common_pb2.JOB_STATE_RUNNING
        ended = trainer.wait(job.id)
        # The job ended only once the cleanup had run to its end, the folder still there.
        assert runner.cleanup_done.is_set()
        assert runner.folder_present_after_cleanup is True
        events = list(trainer.watch(job.id))
    assert first.state == common_pb2.JOB_STATE_RUNNING
    assert (ended.state, ended.error) == (common_pb2.JOB_STATE_CANCELLED, "first")
    cancelled = [e for e in events if e.HasField("state") and e.state.state == ended.state]
    assert len(cancelled) == 1
    assert not work_dir.exists()


async def test_a_cancel_before_the_job_starts_running_cancels_it(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    runner = GatedRunner(steps=2)
    manager = JobManager(
        store, common_pb2.JOB_KIND_TRAIN, trainer_pb2.TrainJobSpec, runner, tmp_path / "jobs"
    )
    await manager.start()
    try:
        job = manager.submit(SPEC)
        while job.id not in manager._running:  # handed to a task that has not run yet
            await asyncio.sleep(0)
        assert manager.cancel(job.id, "too soon").state == common_pb2.JOB_STATE_QUEUED
        final = await manager.wait(job.id, timeout=20)
    finally:
        await manager.stop()
        store.close()
    assert (final.state, final.error) == (common_pb2.JOB_STATE_CANCELLED, "too soon")
    assert runner.attempts == []


def test_unknown_job_is_not_found(settings_for):
    with serving(lambda: trainer_server(settings_for("trainer"), GatedRunner())) as server:
        with pytest.raises(exceptions.NotFound):
            client(server).get("job-missing")
        with pytest.raises(exceptions.NotFound):
            list(client(server).watch("job-missing"))


def test_running_job_resumes_after_restart(settings_for):
    settings = settings_for("trainer")
    first = GatedRunner(steps=4, pause_at=3)
    server = start(settings, first)
    job = client(server).submit(SPEC)
    first.paused.wait(20)
    server.stop()  # the service goes down mid-job
    second = GatedRunner(steps=4)
    server = start(settings, second)
    try:
        trainer = client(server)
        final = trainer.wait(job.id)
        events = list(trainer.watch(job.id))
    finally:
        server.stop()
    assert second.attempts == [(2, True)]
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED and final.attempt == 2
    assert [e.seq for e in events] == list(range(1, final.last_event_seq + 1))
    assert any("resuming" in e.log.message for e in events if e.HasField("log"))


def test_running_job_fails_with_reason_when_it_cannot_resume(settings_for):
    settings = settings_for("trainer")
    first = GatedRunner(steps=4, pause_at=2)
    server = start(settings, first)
    job = client(server).submit(SPEC)
    first.paused.wait(20)
    server.stop()
    server = start(settings, GatedRunner(resumable=False))
    try:
        final = client(server).wait(job.id)
    finally:
        server.stop()
    assert final.state == common_pb2.JOB_STATE_FAILED
    assert "restarted" in final.error


def test_queued_jobs_survive_restart(settings_for):
    settings = settings_for("trainer")
    first = GatedRunner(steps=2, pause_at=1)
    server = start(settings, first)
    ids = [client(server).submit(SPEC).id for _ in range(3)]
    first.paused.wait(20)
    server.stop()
    second = GatedRunner(steps=2)
    server = start(settings, second)
    try:
        finals = [client(server).wait(i) for i in ids]
    finally:
        server.stop()
    assert [f.state for f in finals] == [common_pb2.JOB_STATE_SUCCEEDED] * 3
    assert sorted(second.attempts) == [(1, False), (1, False), (2, True)]


def test_sdk_watch_survives_a_restart_on_the_same_port(settings_for):
    settings = settings_for("trainer")
    first = GatedRunner(steps=5, pause_at=3)
    server = start(settings, first)
    port = server.server.port
    job = client(server).submit(SPEC)
    seen: list[int] = []
    watcher_error: list[BaseException] = []

    def watch() -> None:
        try:
            with TrainerClient(f"127.0.0.1:{port}") as trainer:
                for event in trainer.watch(job.id, reconnect_for=60):
                    seen.append(event.seq)
        except BaseException as exc:
            watcher_error.append(exc)

    thread = threading.Thread(target=watch)
    thread.start()
    first.paused.wait(20)
    wait_until(lambda: len(seen) >= 4)
    server.stop()
    server = start(dataclasses.replace(settings, port=port), GatedRunner(steps=5))
    try:
        thread.join(60)
        final = client(server).get(job.id)[0]
    finally:
        server.stop()
    assert not watcher_error, watcher_error
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED
    assert seen == list(range(1, final.last_event_seq + 1))


async def test_stopping_as_a_job_is_handed_to_its_task_does_not_hang(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    manager = JobManager(
        store, common_pb2.JOB_KIND_TRAIN, trainer_pb2.TrainJobSpec, GatedRunner(), tmp_path
    )
    await manager.start()
    job = manager.submit(SPEC)
    while job.id not in manager._running:
        await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await manager.stop()
    assert store.get(job.id).state == common_pb2.JOB_STATE_QUEUED  # it resumes on restart
    store.close()
