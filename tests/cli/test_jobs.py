"""`forgeline jobs ...` and following a submitted job, against a stand-in trainer."""

from __future__ import annotations

from forgeline.client.refs import parse_ref
from forgeline.v1 import common_pb2


def event(seq: int, **payload) -> common_pb2.JobEvent:
    return common_pb2.JobEvent(job_id="job-1", seq=seq, **payload)


def running_job(trainer, state: int = common_pb2.JOB_STATE_RUNNING) -> common_pb2.Job:
    job = common_pb2.Job(id="job-1", state=state, progress=0.5, last_event_seq=2)
    job.metrics["loss"] = 1.25
    trainer.jobs[job.id] = job
    trainer.events[job.id] = [
        event(1, state=common_pb2.JobStateChange(state=common_pb2.JOB_STATE_RUNNING)),
        event(2, log=common_pb2.JobLog(message="pulling smollm2-135m-instruct:1")),
    ]
    return job


def test_list_filters_by_state_and_shows_short_states(run_cli, trainer):
    running_job(trainer)
    run = run_cli("jobs", "list", "--state", "running", "--state", "QUEUED")
    assert run.exit_code == 0, run.output
    assert trainer.list_states == [[common_pb2.JOB_STATE_RUNNING, common_pb2.JOB_STATE_QUEUED]]
    assert "job-1" in run.output and "running" in run.output and "1.2500" in run.output
    bad = run_cli("jobs", "list", "--state", "sleeping")
    assert bad.exit_code == 2 and "queued, running, succeeded, failed, cancelled" in bad.output


def test_logs_replay_the_log_and_the_state_changes(run_cli, trainer):
    running_job(trainer)
    run = run_cli("jobs", "logs", "job-1")
    assert run.exit_code == 0, run.output
    assert "[RUNNING]" in run.output and "pulling smollm2-135m-instruct:1" in run.output


def test_show_and_cancel(run_cli, trainer):
    running_job(trainer)
    shown = run_cli("jobs", "show", "job-1")
    assert shown.exit_code == 0, shown.output
    assert "job-1 running (50%, attempt 0)" in shown.output and "loss: 1.25" in shown.output
    cancelled = run_cli("jobs", "cancel", "job-1", "--reason", "enough")
    assert cancelled.exit_code == 0, cancelled.output
    assert "job-1: cancelled" in cancelled.output
    assert trainer.jobs["job-1"].error == "enough"


def test_a_followed_job_ends_the_command_with_its_outcome(run_cli, trainer):
    job = running_job(trainer, common_pb2.JOB_STATE_SUCCEEDED)
    job.outputs.append(parse_ref("facts-adapter:1"))
    args = ["sft", "--model", "smollm2-135m-instruct", "--dataset", "facts:1"]
    run = run_cli(*args)
    assert run.exit_code == 0, run.output
    assert "submitted job-1" in run.output and "registered facts-adapter:1" in run.output
    job.state, job.error = common_pb2.JOB_STATE_FAILED, "out of memory"
    failed = run_cli(*args)
    assert failed.exit_code == 1
    assert "job-1 failed" in failed.output and "out of memory" in failed.output


def test_jobs_follow_shows_the_job_to_its_end(run_cli, trainer):
    running_job(trainer, common_pb2.JOB_STATE_SUCCEEDED).outputs.append(parse_ref("facts:2"))
    run = run_cli("jobs", "follow", "job-1")
    assert run.exit_code == 0, run.output
    assert "pulling smollm2-135m-instruct:1" in run.output and "registered facts:2" in run.output
    trainer.jobs["job-1"].state = common_pb2.JOB_STATE_FAILED
    assert run_cli("jobs", "follow", "job-1").exit_code == 1


def test_ctrl_c_stops_following_and_says_how_to_attach_again(run_cli, trainer, monkeypatch):
    running_job(trainer)

    def interrupted(job_id: str, after_seq: int = 0):
        yield trainer.events[job_id][0]
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "watch", interrupted)
    for args in (["sft", "--model", "smollm2-135m-instruct", "--dataset", "facts:1"],
                 ["jobs", "follow", "job-1"]):  # fmt: skip
        run = run_cli(*args)
        assert run.exit_code == 130, run.output
        assert "stopped following job-1; the job keeps running" in run.output
        assert "forgeline jobs follow job-1" in run.output
    assert trainer.jobs["job-1"].state == common_pb2.JOB_STATE_RUNNING
