"""Every bad quantize spec is refused at submission, with its field, and registers nothing.

A real registry in-process holds small model folders (a config.json is all the planner
reads of a model), and the real quantizer service with its real planner answers over a
real channel; a runner that must never run stands in for Ray.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import QuantizerClient
from forgeline.client.refs import parse_ref
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder
from forgeline.common.jobs import JobContext, JobResult
from forgeline.common.settings import ServiceName
from forgeline.v1 import common_pb2, quantizer_pb2, registry_pb2
from tests.conftest import serving

pytestmark = pytest.mark.integration

q = quantizer_pb2
LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


class Idle:
    """A runner that holds accepted jobs without doing them: the planner is under test."""

    resumable = False

    async def run(self, ctx: JobContext) -> JobResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def model_folder(root: Path, name: str, config: dict) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def line(settings_for, tmp_path):
    """A registry with a base, an adapter on it, an orphaned adapter and datasets; and the
    quantizer over it. Yields (quantizer, registry) clients."""
    from forgeline.quantizer.service import create_server as quantizer
    from forgeline.registry.service import create_server as registry_server

    with serving(lambda: registry_server(settings_for("registry"))[0]) as reg:
        options = ChannelOptions(retries=False)
        registry = RegistryClient(reg.address, options)
        base = push_folder(
            registry, model_folder(tmp_path, "base", LLAMA), "smol", registry_pb2.VERSION_KIND_BASE
        )
        gone = push_folder(
            registry,
            model_folder(tmp_path, "gone", {**LLAMA, "hidden_size": 512}),
            "old-base",
            registry_pb2.VERSION_KIND_BASE,
        )
        adapter_dir = tmp_path / "adapter"
        adapter_dir.mkdir()
        (adapter_dir / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
        for name, parent in (("law", f"smol:{base.number}"), ("orphan", "old-base:1")):
            push_folder(
                registry, adapter_dir, name, registry_pb2.VERSION_KIND_ADAPTER, parents=[parent]
            )
        registry.archive_version("old-base:1")
        empty = tmp_path / "empty.jsonl"
        empty.write_text(json.dumps({"unrelated": 1}) + "\n")
        push_file(registry, empty, "no-text", registry_pb2.VERSION_KIND_DATASET)
        moe = model_folder(tmp_path, "moe", {**LLAMA, "architectures": ["MixtralForCausalLM"]})
        push_folder(registry, moe, "moe", registry_pb2.VERSION_KIND_BASE)
        assert gone.number == 1
        settings = settings_for("quantizer", addresses={ServiceName.REGISTRY: reg.address})
        with serving(lambda: quantizer(settings, runner=Idle())[0]) as qs:
            yield QuantizerClient(qs.address, options), registry
        registry.close()


def refused(client: QuantizerClient, **fields) -> list[tuple[str, str]]:
    with pytest.raises(exceptions.InvalidArgument) as info:
        client.submit(q.QuantizeJobSpec(**fields))
    return [(v.field, v.description) for v in info.value.violations]


def test_bad_specs_are_refused_with_their_field_and_register_nothing(line):
    client, registry = line
    before = len(list(registry.list_versions()))
    cases = {
        "unknown reference": (
            {"source": parse_ref("ghost"), "method": q.QUANTIZE_METHOD_GPTQ},
            "spec.source",
            "ghost",
        ),
        "adapter whose base is gone": (
            {"source": parse_ref("orphan"), "method": q.QUANTIZE_METHOD_GPTQ},
            "spec.source",
            "is gone",
        ),
        "dataset with no usable text": (
            {
                "source": parse_ref("smol"),
                "method": q.QUANTIZE_METHOD_GPTQ,
                "calibration_dataset": parse_ref("no-text"),
            },
            "spec.calibration_dataset",
            "",
        ),
        "group size not dividing a width": (
            {"source": parse_ref("smol"), "method": q.QUANTIZE_METHOD_GPTQ, "group_size": 128},
            "spec.group_size",
            "576",
        ),
        "bits the method cannot do": (
            {"source": parse_ref("smol"), "method": q.QUANTIZE_METHOD_AWQ, "bits": 3},
            "spec.bits",
            "4",
        ),
        "an architecture GGUF does not support": (
            {"source": parse_ref("moe"), "method": q.QUANTIZE_METHOD_GGUF},
            "spec.source",
            "MixtralForCausalLM",
        ),
        "a dataset as source": (
            {"source": parse_ref("no-text"), "method": q.QUANTIZE_METHOD_BNB_NF4},
            "spec.source",
            "DATASET",
        ),
        "merging a base": (
            {"source": parse_ref("smol"), "operation": q.QUANTIZE_OPERATION_MERGE},
            "spec.source",
            "only an ADAPTER merges",
        ),
        "more memory than a worker has": (
            {
                "source": parse_ref("smol"),
                "method": q.QUANTIZE_METHOD_BNB_NF4,
                "resources": common_pb2.ResourceRequest(memory_bytes_per_worker=1024**2),
            },
            "spec.resources.memory_bytes_per_worker",
            "GiB",
        ),
    }
    for case, (fields, field, words) in cases.items():
        found = refused(client, **fields)
        assert any(f == field and words in d for f, d in found), (case, found)
    assert len(list(registry.list_versions())) == before
    assert list(client.list()) == []


def test_fp8_without_a_gpu_is_a_failed_precondition(line):
    client, _ = line
    with pytest.raises(exceptions.FailedPrecondition, match="GPU"):
        client.submit(q.QuantizeJobSpec(source=parse_ref("smol"), method=q.QUANTIZE_METHOD_FP8))


def test_a_good_spec_is_stored_resolved(line):
    client, _ = line
    job = client.submit(q.QuantizeJobSpec(source=parse_ref("law"), method=q.QUANTIZE_METHOD_GPTQ))
    _, spec = client.get(job.id)
    assert (spec.source.name, spec.source.version) == ("law", 1)  # pinned
    assert (spec.bits, spec.group_size, spec.output_name) == (4, 64, "law-gptq-w4")
    # no GPU asked for: the CPU calibration budget, written into the stored spec
    assert (spec.num_calibration_samples, spec.calibration_max_seq_length, spec.tuning_steps) == (
        8,
        256,
        25,
    )


def test_explicit_calibration_values_are_kept(line):
    client, _ = line
    asked = q.QuantizeJobSpec(
        source=parse_ref("law"),
        method=q.QUANTIZE_METHOD_AWQ,
        num_calibration_samples=16,
        calibration_max_seq_length=128,
        tuning_steps=50,
    )
    _, spec = client.get(client.submit(asked).id)
    assert (spec.num_calibration_samples, spec.calibration_max_seq_length, spec.tuning_steps) == (
        16,
        128,
        50,
    )
