"""The console's API over a real registry: lineage, comparisons, gated promotion, and the
training form, which must describe the same job as the command line it shows."""

from __future__ import annotations

import shlex

import pytest
import yaml
from fastapi.testclient import TestClient

from forgeline.client.exceptions import FieldViolation
from forgeline.console.errors import ConsoleError
from forgeline.console.training_form import field_violations, form_field, parse_form
from forgeline.v1 import registry_pb2, trainer_pb2
from tests.console.conftest import LINE


def test_the_lineage_of_the_quantized_version_holds_every_ancestor(session: TestClient, line):
    graph = session.get("/api/versions/smol-gptq:1/lineage").json()
    ancestors = line.get_lineage("smol-gptq:1", registry_pb2.LINEAGE_DIRECTION_ANCESTORS)
    expected = {f"{v.model}:{v.number}" for v in ancestors.versions}
    assert expected == {f"{name}:1" for name, _, _ in LINE[:-1]}
    assert {n["ref"] for n in graph["nodes"]} == expected | {"smol-gptq:1"}
    assert {(e["parent"], e["child"]) for e in graph["edges"]} == {
        ("smol:1", "smol-lora:1"),
        ("facts:1", "smol-lora:1"),
        ("smol-lora:1", "smol-merged:1"),
        ("smol-merged:1", "smol-gptq:1"),
    }
    kinds = {n["ref"]: n["kind"] for n in graph["nodes"]}
    assert kinds["facts:1"] == "dataset" and kinds["smol-gptq:1"] == "quantized"


def test_a_model_page_lists_versions_and_alias_history(session: TestClient, line):
    body = session.get("/api/models/smol").json()
    assert [v["ref"] for v in body["versions"]] == ["smol:1"]
    assert [(e["alias"], e["version"], e["actor"]) for e in body["alias_history"]] == [
        ("production", 1, "test")
    ]


def test_two_versions_compare_subject_by_subject(session: TestClient, line):
    body = session.get("/api/compare", params={"a": "smol:1", "b": "smol-gptq:1"}).json()
    (suite,) = body["suites"]
    deltas = {row["subject"]: round(row["delta"], 6) for row in suite["subjects"]}
    assert deltas == {"history": -0.1, "law": -0.3}
    assert round(suite["metrics"][0]["delta"], 6) == -0.2


def test_a_refused_promotion_answers_with_the_gate_s_decision(session: TestClient, line):
    answer = session.post(
        "/api/versions/smol-gptq:1/promote",
        json={"alias": "production", "suite": "mmlu", "minimum": 0.4},
    )
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "gate_refused"
    assert "0.3" in error["message"] and "0.4" in error["message"]
    assert line.get_model("smol-gptq").aliases.get("production") is None


def test_a_passing_promotion_moves_the_alias(session: TestClient, line):
    answer = session.post(
        "/api/versions/smol-gptq:1/promote",
        json={"alias": "production", "suite": "mmlu", "minimum": 0.2},
    )
    assert answer.status_code == 200, answer.text
    assert line.get_model("smol-gptq").aliases["production"] == 1


def test_unknown_versions_and_bad_bodies_name_what_is_wrong(session: TestClient, line):
    assert session.get("/api/versions/nothing:1").status_code == 404
    answer = session.post("/api/versions/smol:1/promote", json={"alias": "", "tolerance": -1})
    assert answer.status_code == 400
    fields = {v["field"] for v in answer.json()["error"]["violations"]}
    assert fields == {"alias", "tolerance"}


FORM = {
    "task": "sft",
    "model": "smollm2-135m-instruct:1",
    "dataset": "facts:1",
    "max_steps": "3",
    "learning_rate": "0.001",
    "lora_rank": "4",
    "max_seq_len": "64",
    "tuner": "lora",
    "precision": "fp32",
    "label": "team=law, stage=try",
}


def test_the_form_builds_the_spec_the_cli_would(run_cli):
    job = parse_form(FORM)
    spec = job.spec
    assert spec.task == trainer_pb2.TRAIN_TASK_SFT
    assert spec.hyper_parameters.max_steps == 3 and spec.lora.rank == 4
    assert spec.hyper_parameters.learning_rate == pytest.approx(1e-3)
    assert spec.base_model.name == "smollm2-135m-instruct" and spec.dataset.version == 1
    assert dict(spec.labels) == {"team": "law", "stage": "try"}
    # The command line shown prints, with --print-config, the very job file shown.
    words = shlex.split(job.command_line())
    assert words[:2] == ["forgeline", "sft"]
    printed = run_cli(*words[1:], "--print-config")
    assert printed.exit_code == 0, printed.output
    assert yaml.safe_load(printed.stdout) == yaml.safe_load(job.job_file())
    assert printed.stdout == job.job_file()


def test_form_values_of_the_wrong_type_are_named():
    with pytest.raises(ConsoleError) as caught:
        parse_form({**FORM, "learning_rate": "fast", "max_steps": "1.5", "model": ""})
    fields = {v["field"]: v["description"] for v in caught.value.violations}
    assert fields == {
        "learning_rate": "must be a number",
        "max_steps": "must be a whole number",
        "model": "is required",
    }
    with pytest.raises(ConsoleError) as caught:
        parse_form({**FORM, "deepspeed": "/etc/passwd", "tuner": "freeze"})
    fields = {v["field"] for v in caught.value.violations}
    assert fields == {"deepspeed", "tuner"}


def test_trainer_violations_come_back_under_the_form_s_fields():
    assert form_field("spec.hyper_parameters.learning_rate") == "learning_rate"
    assert form_field("spec.lora.rank") == "lora_rank"
    assert form_field("spec.base_model") == "model"
    assert form_field("spec.lora.target_modules[2]") == "target_modules"
    assert form_field("spec.something_else") == "spec.something_else"
    (v,) = field_violations([FieldViolation("spec.hyper_parameters.max_seq_length", "too big")])
    assert v == {
        "field": "max_seq_len",
        "path": "spec.hyper_parameters.max_seq_length",
        "description": "too big",
    }
