"""`forgeline deploy REF --follow` and how `forgeline served` shows a followed alias."""

from __future__ import annotations

import pytest

from forgeline.v1 import common_pb2, inference_pb2
from tests.cli.test_json_output import _Fake

READY = inference_pb2.SERVED_MODEL_STATE_READY


@pytest.fixture
def inference(monkeypatch):
    followed = inference_pb2.ServedModel(
        name="law",
        kind=inference_pb2.SERVED_MODEL_KIND_BASE,
        ref=common_pb2.ModelRef(name="law", alias="production"),
        version=2,
        state=READY,
        follows="law@production",
        rollout_error="law:3: the engine did not start: RuntimeError: out of memory",
    )
    fake = _Fake(load_model=followed, list_models=[followed])
    monkeypatch.setattr("forgeline.cli.serving.inference_client", lambda address=None: fake)
    return fake


def test_deploy_follow_sends_follow(run_cli, inference):
    run = run_cli("deploy", "law@production", "--follow")
    assert run.exit_code == 0, run.output
    [(name, kwargs)] = inference.calls
    assert name == "load_model" and kwargs["follow"] is True
    assert "law@production" in run.stdout


@pytest.mark.parametrize("ref", ["law", "law:2"])
def test_follow_without_an_alias_is_refused_before_any_call(run_cli, inference, ref):
    run = run_cli("deploy", ref, "--follow")
    assert run.exit_code == 2
    assert "--follow" in run.output and "name@alias" in run.output
    assert inference.calls == []


def test_follow_with_adapters_is_refused(run_cli, inference):
    run = run_cli("deploy", "law@production", "--follow", "--adapter", "law-lora")
    assert run.exit_code == 2 and "--adapter" in run.output and "--follow" in run.output
    assert inference.calls == []


def test_served_shows_the_followed_alias_and_the_rollout_error(run_cli, inference):
    run = run_cli("served")
    assert run.exit_code == 0, run.output
    assert "follows" in run.stdout and "law@production" in run.stdout
    assert "rollout failed: law:3" in run.stdout and "out of memory" in run.stdout
