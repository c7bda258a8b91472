"""`--json` prints machine-readable JSON and nothing else on standard output."""

from __future__ import annotations

import json

from forgeline.v1 import common_pb2, inference_pb2, registry_pb2, trainer_pb2


class _Fake:
    """A client stand-in usable as a context manager."""

    def __init__(self, **answers) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.answers = answers

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, kwargs))
            return self.answers[name]

        return call


def test_models_list_json(run_cli, monkeypatch):
    version = registry_pb2.Version(
        model="law", number=3, kind=registry_pb2.VERSION_KIND_ADAPTER, total_bytes=2**40
    )
    fake = _Fake(list_versions=iter([version]))
    monkeypatch.setattr("forgeline.cli.models.registry_client", lambda address=None: fake)
    run = run_cli("models", "list", "--kind", "ADAPTER", "--json")
    assert run.exit_code == 0, run.output
    (listed,) = json.loads(run.stdout)
    assert (listed["model"], listed["number"], listed["kind"]) == (
        "law", 3, "VERSION_KIND_ADAPTER",
    )  # fmt: skip
    assert listed["total_bytes"] == 2**40 and listed["aliases"] == []
    assert fake.calls[0][1]["kinds"] == [registry_pb2.VERSION_KIND_ADAPTER]


def test_jobs_list_and_show_json(run_cli, trainer):
    job = common_pb2.Job(id="job-1", state=common_pb2.JOB_STATE_RUNNING, progress=0.5)
    job.metrics["loss"] = 1.25
    trainer.jobs["job-1"] = job
    trainer.specs["job-1"] = trainer_pb2.TrainJobSpec(tuner=trainer_pb2.TUNER_DORA)
    listed = run_cli("jobs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    assert entry["id"] == "job-1" and entry["state"] == "JOB_STATE_RUNNING"
    assert entry["metrics"] == {"loss": 1.25} and entry["progress"] == 0.5
    shown = run_cli("jobs", "show", "job-1", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["job"]["id"] == "job-1" and data["spec"]["tuner"] == "TUNER_DORA"


def test_served_json(run_cli, monkeypatch):
    model = inference_pb2.ServedModel(
        name="smol",
        kind=inference_pb2.SERVED_MODEL_KIND_BASE,
        state=inference_pb2.SERVED_MODEL_STATE_READY,
        max_model_len=2048,
    )
    fake = _Fake(list_models=[model])
    monkeypatch.setattr("forgeline.cli.serving.inference_client", lambda address=None: fake)
    run = run_cli("served", "--json")
    assert run.exit_code == 0, run.output
    (entry,) = json.loads(run.stdout)
    assert (entry["name"], entry["state"], entry["max_model_len"]) == (
        "smol", "SERVED_MODEL_STATE_READY", 2048,
    )  # fmt: skip
