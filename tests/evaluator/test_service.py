"""Every bad evaluation spec is refused at submission, before any engine starts, by field.

A real registry in-process holds a model version and datasets; the real evaluator service
with its real planner answers over a real channel. Nothing is scored here: a runner that
must never be reached stands in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import EvaluatorClient
from forgeline.client.refs import parse_ref
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder
from forgeline.common.jobs import JobContext, JobResult
from forgeline.common.settings import ServiceName
from forgeline.v1 import common_pb2, registry_pb2
from forgeline.v1 import evaluator_pb2 as e
from tests.conftest import serving

pytestmark = pytest.mark.integration

MMLU = Path("/work/shared/data/mmlu")


class NeverRuns:
    resumable = False

    async def run(self, ctx: JobContext) -> JobResult:
        raise AssertionError("a refused spec was queued")


@pytest.fixture
def line(settings_for, tmp_path):
    """Yields (evaluator, registry) clients over a registry with a model and datasets."""
    from forgeline.evaluator.service import create_server as evaluator
    from forgeline.registry.service import create_server as registry_server

    with serving(lambda: registry_server(settings_for("registry"))[0]) as reg:
        registry = RegistryClient(reg.address, ChannelOptions(retries=False))
        model = tmp_path / "model"
        model.mkdir()
        (model / "config.json").write_text("{}")
        push_folder(registry, model, "smol", registry_pb2.VERSION_KIND_BASE)
        registry.create_version("half", registry_pb2.VERSION_KIND_BASE, create_model=True)
        # An MMLU-layout folder with one good subject and one with a short row.
        mc = tmp_path / "mc"
        for split in ("dev", "test"):
            (mc / split).mkdir(parents=True)
            for subject in ("anatomy", "astronomy"):
                shutil.copy(MMLU / split / f"{subject}_{split}.csv", mc / split)
        broken = mc / "test" / "astronomy_test.csv"
        lines = broken.read_text().splitlines()
        lines[2] = "a question,A,B,C"
        broken.write_text("\n".join(lines) + "\n")
        push_folder(registry, mc, "mc", registry_pb2.VERSION_KIND_DATASET)
        no_answers = tmp_path / "qa.jsonl"
        no_answers.write_text(json.dumps({"question": "2+2?"}) + "\n")
        push_file(registry, no_answers, "qa-no-answers", registry_pb2.VERSION_KIND_DATASET)
        settings = settings_for(
            "evaluator",
            addresses={ServiceName.REGISTRY: reg.address, ServiceName.INFERENCE: "127.0.0.1:1"},
        )
        with serving(lambda: evaluator(settings, runner=NeverRuns())[0]) as ev:
            yield EvaluatorClient(ev.address, ChannelOptions(retries=False)), registry
        registry.close()


def mc(**fields) -> e.EvalSuite:
    return e.EvalSuite(
        multiple_choice=e.MultipleChoiceSuite(
            format=e.MULTIPLE_CHOICE_FORMAT_MMLU, dataset=parse_ref("mc"), **fields
        )
    )


def refused(client: EvaluatorClient, spec: e.EvalJobSpec) -> list[tuple[str, str]]:
    with pytest.raises(exceptions.InvalidArgument) as info:
        client.submit(spec)
    return [(v.field, v.description) for v in info.value.violations]


def target(ref: str = "smol") -> e.EvalTarget:
    return e.EvalTarget(version=parse_ref(ref))


def test_bad_input_is_refused_before_any_engine_starts(line):
    client, _ = line
    cases = [
        (
            e.EvalJobSpec(target=target(), suites=[mc(subjects=["astronomy"])]),
            "spec.suites[0].multiple_choice.dataset",
            "astronomy_test.csv:3",
        ),
        (
            e.EvalJobSpec(target=target(), suites=[mc(subjects=["virology"])]),
            "spec.suites[0].multiple_choice.subjects",
            "anatomy, astronomy",
        ),
        (
            e.EvalJobSpec(
                target=target(),
                suites=[
                    e.EvalSuite(
                        generation_qa=e.GenerationQaSuite(dataset=parse_ref("qa-no-answers"))
                    )
                ],
            ),
            "spec.suites[0].generation_qa.dataset",
            "answer",
        ),
        (
            e.EvalJobSpec(target=e.EvalTarget(served_model="nobody"), suites=[mc()]),
            "spec.target.served_model",
            "nobody",
        ),
        (
            e.EvalJobSpec(target=target("half:1"), suites=[mc()]),
            "spec.target.version",
            "PENDING",
        ),
        (
            e.EvalJobSpec(target=target("mc"), suites=[mc()]),
            "spec.target.version",
            "DATASET",
        ),
        (
            e.EvalJobSpec(
                target=target(),
                suites=[
                    e.EvalSuite(generation_qa=e.GenerationQaSuite(builtin="gsm8k-mini"), name="x"),
                    e.EvalSuite(generation_qa=e.GenerationQaSuite(builtin="gsm8k-mini"), name="x"),
                ],
            ),
            "spec.suites[1].name",
            "twice",
        ),
    ]
    for spec, field, words in cases:
        found = refused(client, spec)
        assert any(f == field and words in d for f, d in found), (field, found)
    assert list(client.list()) == []


def test_a_spec_without_suites_gets_the_mmlu_subset(line):
    client, _ = line
    job = client.submit(e.EvalJobSpec(target=target()))
    _, spec = client.get(job.id)
    assert [s.name for s in spec.suites] == ["mmlu"]
    assert spec.suites[0].multiple_choice.builtin == "mmlu-mini"
    assert (spec.target.version.name, spec.target.version.version) == ("smol", 1)
    assert job.state == common_pb2.JOB_STATE_QUEUED
