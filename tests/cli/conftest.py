"""CLI fixtures: a stand-in trainer that records what the commands send it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forgeline.v1 import common_pb2, trainer_pb2


class FakeTrainer:
    """Answers the `TrainerClient` calls the CLI makes, and keeps what it was sent."""

    def __init__(self) -> None:
        self.planned: list[trainer_pb2.TrainJobSpec] = []
        self.submitted: list[trainer_pb2.TrainJobSpec] = []
        self.list_states: list[list[int]] = []
        self.plan_response = trainer_pb2.PlanTrainJobResponse(
            strategy=trainer_pb2.DISTRIBUTION_STRATEGY_NONE, num_examples=16, total_steps=4
        )
        self.jobs: dict[str, common_pb2.Job] = {}
        self.specs: dict[str, trainer_pb2.TrainJobSpec] = {}
        self.events: dict[str, list[common_pb2.JobEvent]] = {}

    def __enter__(self) -> FakeTrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def plan(self, spec: trainer_pb2.TrainJobSpec) -> trainer_pb2.PlanTrainJobResponse:
        self.planned.append(spec)
        return self.plan_response

    def submit(self, spec: trainer_pb2.TrainJobSpec) -> common_pb2.Job:
        self.submitted.append(spec)
        return common_pb2.Job(id="job-1", state=common_pb2.JOB_STATE_QUEUED)

    def get(self, job_id: str) -> tuple[common_pb2.Job, trainer_pb2.TrainJobSpec]:
        return self.jobs[job_id], self.specs.get(job_id, trainer_pb2.TrainJobSpec())

    def list(self, states: list[int]) -> Iterator[common_pb2.Job]:
        self.list_states.append(list(states))
        return iter(self.jobs.values())

    def watch(self, job_id: str, after_seq: int = 0) -> Iterator[common_pb2.JobEvent]:
        return iter(e for e in self.events.get(job_id, []) if e.seq > after_seq)

    def cancel(self, job_id: str, reason: str = "") -> common_pb2.Job:
        job = self.jobs[job_id]
        job.state, job.error = common_pb2.JOB_STATE_CANCELLED, reason
        return job


@pytest.fixture
def trainer(monkeypatch) -> FakeTrainer:
    """A `FakeTrainer` every trainer command of the CLI talks to."""
    fake = FakeTrainer()
    monkeypatch.setattr("forgeline.cli.training.trainer_client", lambda address=None: fake)
    monkeypatch.setattr("forgeline.cli.jobs.trainer_client", lambda address=None: fake)
    return fake
