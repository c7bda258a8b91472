"""The evaluator end to end on the bundled SmolLM2 with the real data: real registry, real Ray,
real scoring; reports land in the registry and gate a promotion.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.jobs import EvaluatorClient
from forgeline.client.refs import format_ref, parse_ref
from forgeline.client.transfer import push_folder
from forgeline.common.settings import ServiceName, Settings
from forgeline.v1 import common_pb2, inference_pb2, registry_pb2
from forgeline.v1 import evaluator_pb2 as e
from tests.conftest import ServerThread, serving
from tests.inference.support import ADAPTER_MODEL, BASE_MODEL, ENGINE, registry_with_models

pytestmark = pytest.mark.e2e

CEVAL = Path("/work/shared/data/ceval")
MMLU = e.EvalSuite(
    name="mmlu",
    multiple_choice=e.MultipleChoiceSuite(
        format=e.MULTIPLE_CHOICE_FORMAT_MMLU,
        builtin="mmlu-mini",
        subjects=["marketing", "abstract_algebra"],
        limit_per_subject=4,
    ),
)


@pytest.fixture(scope="module")
def line(tmp_path_factory, bundled_model, ray_cluster):
    """The registry (bundled model + a LoRA adapter) and the evaluator service."""
    from forgeline.evaluator.service import create_server

    home = tmp_path_factory.mktemp("home")
    with registry_with_models(home, bundled_model) as registry:
        settings = Settings.load(
            "evaluator",
            host="127.0.0.1",
            port=0,
            home=home,
            addresses={ServiceName.REGISTRY: registry.address},
        )
        server = ServerThread(lambda: create_server(settings)[0]).start()
        try:
            with EvaluatorClient(server.address) as evaluator, registry.client() as client:
                yield evaluator, client, registry, settings
        finally:
            server.stop()


def evaluate(evaluator: EvaluatorClient, spec: e.EvalJobSpec) -> e.EvalReport:
    final = evaluator.wait(evaluator.submit(spec).id)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    return evaluator.report(final.id)


def test_reports_land_in_the_registry_add_up_and_gate_a_promotion(line, tmp_path):
    evaluator, registry, _, _ = line
    report = evaluate(
        evaluator,
        e.EvalJobSpec(
            target=e.EvalTarget(version=parse_ref(BASE_MODEL)),
            suites=[MMLU],
            attach_to_registry=True,
        ),
    )
    (result,) = report.results
    correct = sum(s.correct for s in result.subjects.values())
    total = sum(s.total for s in result.subjects.values())
    assert total == result.num_samples == 8
    assert result.metrics["accuracy"] == pytest.approx(correct / total)
    items = VersionCache(registry, tmp_path / "cache").pull(format_ref(result.items)).path
    rows = [json.loads(line) for line in (items / "mmlu.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and sum(r["correct"] for r in rows) == correct
    (attached,) = registry.list_evaluations(f"{BASE_MODEL}:1", "mmlu")
    assert attached.metrics["accuracy"] == result.metrics["accuracy"]
    assert dict(attached.subject_samples) == {"marketing": 4, "abstract_algebra": 4}
    gate = registry_pb2.EvaluationGate(suite="mmlu", metric="accuracy", minimum=0.0)
    registry.set_alias(BASE_MODEL, "production", 1, gate=gate)
    floor = registry_pb2.EvaluationGate(
        suite="mmlu", metric="accuracy", minimum=result.metrics["accuracy"] + 0.01
    )
    with pytest.raises(exceptions.FailedPrecondition):
        registry.set_alias(BASE_MODEL, "candidate", 1, gate=floor)


def test_ceval_and_gsm8k_suites_run(line, tmp_path):
    evaluator, registry, _, _ = line
    ceval = tmp_path / "ceval"
    for split in ("dev", "val"):
        (ceval / split).mkdir(parents=True)
        shutil.copy(CEVAL / split / f"computer_network_{split}.csv", ceval / split)
    data = push_folder(registry, ceval, "ceval-sample", registry_pb2.VERSION_KIND_DATASET)
    report = evaluate(
        evaluator,
        e.EvalJobSpec(
            target=e.EvalTarget(version=parse_ref(BASE_MODEL)),
            suites=[
                e.EvalSuite(
                    multiple_choice=e.MultipleChoiceSuite(
                        format=e.MULTIPLE_CHOICE_FORMAT_CEVAL,
                        dataset=parse_ref(f"{data.model}:{data.number}"),
                        num_few_shot=2,
                        limit_per_subject=3,
                    )
                ),
                e.EvalSuite(generation_qa=e.GenerationQaSuite(builtin="gsm8k-mini", limit=2)),
            ],
        ),
    )
    assert [r.suite_name for r in report.results] == ["ceval", "gsm8k"]
    assert report.results[0].subjects["computer_network"].total == 3
    assert report.results[1].num_samples == 2


def test_an_adapter_target_is_scored_on_its_base(line):
    evaluator, _, _, _ = line
    report = evaluate(
        evaluator,
        e.EvalJobSpec(target=e.EvalTarget(version=parse_ref(ADAPTER_MODEL)), suites=[MMLU]),
    )
    assert report.results[0].num_samples == 8
    assert report.target.version.version == 1


def test_a_served_model_is_scored_through_the_inference_service(line):
    from forgeline.client.inference import InferenceClient
    from forgeline.evaluator.service import create_server as evaluator_server
    from forgeline.inference.service import create_server as inference_server

    _, _, registry, settings = line
    inference_settings = Settings.load(
        "inference",
        host="127.0.0.1",
        port=0,
        home=registry.home,
        addresses={ServiceName.REGISTRY: registry.address},
    )
    options = inference_pb2.EngineOptions()
    options.CopyFrom(ENGINE)
    with (
        serving(lambda: inference_server(inference_settings)[0]) as inference,
        InferenceClient(inference.address) as client,
    ):
        served = client.load_model(BASE_MODEL, "smol", options)
        assert served.state == inference_pb2.SERVED_MODEL_STATE_READY, served.error
        addresses = {**settings.addresses, ServiceName.INFERENCE: inference.address}
        with serving(
            lambda: evaluator_server(Settings.load("evaluator", host="127.0.0.1", port=0,
                                                   home=registry.home, addresses=addresses))[0]
        ) as ev, EvaluatorClient(ev.address) as evaluator:  # fmt: skip
            report = evaluate(
                evaluator, e.EvalJobSpec(target=e.EvalTarget(served_model="smol"), suites=[MMLU])
            )
    (result,) = report.results
    assert result.num_samples == 8
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
