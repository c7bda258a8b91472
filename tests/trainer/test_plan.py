"""The planner: memory estimates on SmolLM2's shape, AUTO strategy, and spec resolution.

The model's sizes come from the bundled SmolLM2 folder's config and safetensors headers
(no weights are loaded). The `Planner` tests run against a fake version cache holding a
few versions, each backed by a local folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.cache import CachedVersion
from forgeline.client.refs import parse_ref
from forgeline.trainer.config import (
    DistSettings,
    HyperSettings,
    LoraSettings,
    OptimizerKind,
    QuantSettings,
    Strategy,
    Task,
    TrainConfig,
    Tuner,
)
from forgeline.trainer.memory import choose_strategy, estimate_memory, micro_batch_tokens
from forgeline.trainer.model_info import ModelInfo, read_model_info
from forgeline.trainer.plan import Planner
from forgeline.v1 import registry_pb2, trainer_pb2
from tests.trainer.datasets import facts_rows, write_jsonl

QV = ("q_proj", "v_proj")
# Rank-8 adapters on q_proj (576 -> 576) and v_proj (576 -> 192) of SmolLM2's 30 layers.
SMOLLM2_QV_RANK8 = 30 * 8 * ((576 + 576) + (576 + 192))
# Measured with bitsandbytes on this model: 166 MB in NF4, 538 MB in fp32.
MEASURED_NF4_BYTES = 166e6
MEASURED_FP32_BYTES = 538e6
TOKENS = 2 * 256


@pytest.fixture(scope="module")
def smollm2(bundled_model: Path) -> ModelInfo:
    return read_model_info(bundled_model)


def config(tuner: Tuner = Tuner.LORA, **changes) -> TrainConfig:
    """A single-worker SFT configuration of `tuner` on q_proj and v_proj, rank 8."""
    cfg = TrainConfig(
        task=Task.SFT,
        tuner=tuner,
        lora=LoraSettings(rank=8, alpha=16, target_modules=QV),
        quant=QuantSettings(bits=4) if tuner is Tuner.QLORA else None,
        hyper=HyperSettings(
            optimizer=OptimizerKind.PAGED_ADAMW_32BIT
            if tuner is Tuner.QLORA
            else OptimizerKind.ADAMW
        ),
    )
    return dataclasses.replace(cfg, **changes)


def hyper(cfg: TrainConfig, **changes) -> TrainConfig:
    return dataclasses.replace(cfg, hyper=dataclasses.replace(cfg.hyper, **changes))


def auto(cfg: TrainConfig, num_workers: int) -> TrainConfig:
    """`cfg` on `num_workers` workers with the strategy left to the plan."""
    dist = dataclasses.replace(cfg.dist, strategy=Strategy.AUTO, num_workers=num_workers)
    return dataclasses.replace(cfg, dist=dist)


# -- the memory estimate ----------------------------------------------------------------------


def test_model_info_reads_smollm2_sizes_from_the_headers(smollm2):
    assert smollm2.model_type == "llama"
    assert (smollm2.hidden_size, smollm2.intermediate_size) == (576, 1536)
    assert (smollm2.num_layers, smollm2.num_heads, smollm2.vocab_size) == (30, 9, 49152)
    assert 134e6 < smollm2.num_params < 135e6
    assert smollm2.lora_params(8, QV) == SMOLLM2_QV_RANK8


def test_lora_trains_the_adapters_only_over_fp32_base_weights(smollm2):
    lora = estimate_memory(smollm2, config(Tuner.LORA), Strategy.NONE, 0, TOKENS)
    assert lora.gradients == 4 * SMOLLM2_QV_RANK8
    assert lora.optimizer == 8 * SMOLLM2_QV_RANK8  # AdamW's two fp32 moments
    assert lora.weights == 4 * smollm2.num_params + 4 * SMOLLM2_QV_RANK8
    assert lora.weights == pytest.approx(MEASURED_FP32_BYTES, rel=0.01)


def test_qlora_stores_the_base_in_4_bits_and_trains_the_same_adapters(smollm2):
    lora = estimate_memory(smollm2, config(Tuner.LORA), Strategy.NONE, 0, TOKENS)
    qlora = estimate_memory(smollm2, config(Tuner.QLORA), Strategy.NONE, 0, TOKENS)
    frozen = qlora.weights - 4 * SMOLLM2_QV_RANK8
    assert frozen == pytest.approx(MEASURED_NF4_BYTES, rel=0.1)
    assert qlora.weights < lora.weights / 3
    assert (qlora.gradients, qlora.optimizer) == (lora.gradients, lora.optimizer)
    assert qlora.activations == lora.activations
    double = dataclasses.replace(config(Tuner.QLORA), quant=QuantSettings(double_quant=True))
    assert estimate_memory(smollm2, double, Strategy.NONE, 0, TOKENS).weights < qlora.weights


def test_full_tuning_keeps_gradients_and_adam_state_for_every_parameter(smollm2):
    lora = estimate_memory(smollm2, config(Tuner.LORA), Strategy.NONE, 0, TOKENS)
    full = estimate_memory(smollm2, config(Tuner.FULL), Strategy.NONE, 0, TOKENS)
    n = smollm2.num_params
    assert (full.weights, full.gradients, full.optimizer) == (4 * n, 4 * n, 8 * n)
    assert full.total - lora.total > 11 * n
    assert full.activations == lora.activations


def test_cpu_workers_count_the_activation_buffers_their_allocator_keeps(smollm2):
    cpu = estimate_memory(smollm2, config(Tuner.LORA), Strategy.NONE, 0, TOKENS)
    gpu_cfg = dataclasses.replace(config(Tuner.LORA), dist=DistSettings(gpus_per_worker=1))
    gpu = estimate_memory(smollm2, gpu_cfg, Strategy.NONE, 0, TOKENS)
    assert cpu.allocator == cpu.activations > 0
    assert gpu.allocator == 0 and gpu.activations == cpu.activations
    assert cpu.total - gpu.total == cpu.activations
    assert cpu.to_pb().allocator_bytes == cpu.allocator
    assert cpu.to_pb().total_bytes == cpu.total


def test_activations_grow_with_batch_and_sequence_not_with_accumulation(smollm2):
    base = config(hyper=HyperSettings(batch_size=2, max_seq_length=256))

    def activations(cfg: TrainConfig, longest: int = 256) -> int:
        tokens = micro_batch_tokens(cfg, longest)
        return estimate_memory(smollm2, cfg, Strategy.NONE, 0, tokens).activations

    one = activations(base)
    assert one > 0
    assert activations(hyper(base, grad_accum=8)) == one
    # Linear in the tokens of a micro-batch, beyond one fixed chunk of logits.
    half, double = activations(hyper(base, batch_size=1)), activations(hyper(base, batch_size=4))
    assert double - one == 2 * (one - half) > 0
    assert activations(hyper(base, max_seq_length=512), longest=512) == double
    # Unpacked batches are padded to their longest sequence, capped at max_seq_length.
    assert activations(base, longest=128) == half
    assert activations(base, longest=4096) == one
    assert activations(hyper(base, packing=True), longest=128) == one
    assert activations(hyper(base, gradient_checkpointing=True)) < one / 2
    assert activations(dataclasses.replace(base, task=Task.DPO)) == 2 * one


def test_zero_stages_divide_state_over_workers(smollm2):
    full = auto(config(Tuner.FULL), 2)
    ddp = estimate_memory(smollm2, full, Strategy.DDP, 0, TOKENS)
    zero2 = estimate_memory(smollm2, full, Strategy.DEEPSPEED, 2, TOKENS)
    zero3 = estimate_memory(smollm2, full, Strategy.DEEPSPEED, 3, TOKENS)
    assert (zero2.optimizer, zero2.gradients, zero2.weights) == (
        ddp.optimizer // 2,
        ddp.gradients // 2,
        ddp.weights,
    )
    assert zero3.weights == ddp.weights // 2
    assert ddp.total > zero2.total > zero3.total


# -- AUTO ---------------------------------------------------------------------------------------


def test_auto_picks_the_lightest_strategy_that_fits_the_worker(smollm2):
    full = auto(config(Tuner.FULL), 2)

    def total(strategy: Strategy, stage: int) -> int:
        return estimate_memory(smollm2, full, strategy, stage, TOKENS).total

    ddp, zero2, fsdp, zero3 = (
        total(Strategy.DDP, 0),
        total(Strategy.DEEPSPEED, 2),
        total(Strategy.FSDP, 0),
        total(Strategy.DEEPSPEED, 3),
    )
    assert ddp > zero2 > fsdp >= zero3
    assert choose_strategy(smollm2, full, TOKENS, 0) == (Strategy.DDP, None)
    assert choose_strategy(smollm2, full, TOKENS, ddp) == (Strategy.DDP, None)
    assert choose_strategy(smollm2, full, TOKENS, ddp - 1) == (Strategy.DEEPSPEED, 2)
    assert choose_strategy(smollm2, full, TOKENS, zero2) == (Strategy.DEEPSPEED, 2)
    assert choose_strategy(smollm2, full, TOKENS, zero2 - 1) == (Strategy.FSDP, None)
    # Nothing fits: the lightest candidate, and the plan warns.
    assert choose_strategy(smollm2, full, TOKENS, zero3 // 2) == (Strategy.DEEPSPEED, 3)


def test_auto_never_partitions_quantized_weights_and_one_worker_runs_alone(smollm2):
    qlora = auto(config(Tuner.QLORA), 2)
    assert choose_strategy(smollm2, qlora, TOKENS, 1) == (Strategy.DEEPSPEED, 2)
    on_gpus = dataclasses.replace(qlora, dist=dataclasses.replace(qlora.dist, gpus_per_worker=1))
    assert choose_strategy(smollm2, on_gpus, TOKENS, 1) == (Strategy.FSDP, None)
    alone = auto(config(Tuner.FULL), 1)
    assert choose_strategy(smollm2, alone, TOKENS, 1) == (Strategy.NONE, None)
    fsdp = auto(config(Tuner.FULL), 2)
    fsdp = dataclasses.replace(fsdp, dist=dataclasses.replace(fsdp.dist, strategy=Strategy.FSDP))
    assert choose_strategy(smollm2, fsdp, TOKENS, 1) == (Strategy.FSDP, None)


# -- the planner --------------------------------------------------------------------------------


class FakeCache:
    """Resolves `name`, `name:N` and `name@alias` against a few versions with local folders."""

    def __init__(self) -> None:
        self.versions: list[tuple[registry_pb2.Version, Path]] = []
        self.pulled: list[str] = []

    def add(self, name: str, number: int, kind: int, folder: Path, *aliases: str) -> None:
        version = registry_pb2.Version(
            model=name,
            number=number,
            kind=kind,
            state=registry_pb2.VERSION_STATE_READY,
            aliases=list(aliases),
        )
        self.versions.append((version, folder))

    def _find(self, ref: str) -> tuple[registry_pb2.Version, Path]:
        name, _, alias = ref.partition("@")
        name, _, number = name.partition(":")
        found = [
            (v, folder)
            for v, folder in self.versions
            if v.model == name
            and (not number or v.number == int(number))
            and (not alias or alias in v.aliases)
        ]
        if not found:
            raise exceptions.NotFound("model", ref)
        return max(found, key=lambda item: item[0].number)

    def resolve(self, ref: str) -> registry_pb2.Version:
        return self._find(ref)[0]

    def pull(self, ref: str) -> CachedVersion:
        self.pulled.append(ref)
        version, folder = self._find(ref)
        return CachedVersion(path=folder, version=version)


@pytest.fixture(scope="module")
def tokenizer(bundled_model: Path):
    from forgeline.trainer.modeling import load_tokenizer

    return load_tokenizer(bundled_model)


@pytest.fixture
def cache(tmp_path: Path, bundled_model: Path) -> FakeCache:
    facts = tmp_path / "facts"
    facts.mkdir()
    write_jsonl(facts / "facts.jsonl", facts_rows())
    law = tmp_path / "law"
    law.mkdir()
    (law / "law_qa.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "q"}]})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]})
        + "\n"
    )
    out = FakeCache()
    out.add("smollm2", 2, registry_pb2.VERSION_KIND_BASE, bundled_model)
    out.add("smollm2", 3, registry_pb2.VERSION_KIND_BASE, bundled_model, "production")
    out.add("smollm2", 4, registry_pb2.VERSION_KIND_BASE, bundled_model)
    out.add("facts", 1, registry_pb2.VERSION_KIND_DATASET, facts)
    out.add("facts", 2, registry_pb2.VERSION_KIND_DATASET, facts)
    out.add("law-qa", 1, registry_pb2.VERSION_KIND_DATASET, law)
    out.add("facts-adapter", 1, registry_pb2.VERSION_KIND_ADAPTER, tmp_path)
    return out


@pytest.fixture
def planner(cache: FakeCache, tokenizer) -> Planner:
    return Planner(cache, tokenizer_loader=lambda _folder: tokenizer)


def sft_spec(
    base: str = "smollm2@production", dataset: str = "facts", **hyper
) -> trainer_pb2.TrainJobSpec:
    """A small LoRA SFT spec; `hyper` overrides its hyper-parameters."""
    return trainer_pb2.TrainJobSpec(
        task=trainer_pb2.TRAIN_TASK_SFT,
        base_model=parse_ref(base),
        dataset=parse_ref(dataset),
        lora=trainer_pb2.LoraConfig(rank=4, target_modules=QV),
        hyper_parameters=trainer_pb2.HyperParameters(
            **{"per_device_batch_size": 2, "max_seq_length": 64, **hyper}
        ),
    )


def test_references_are_pinned_to_version_numbers(planner, cache):
    spec = sft_spec(base="smollm2@production", dataset="facts")
    plan = planner.plan(spec)
    assert plan.ok, plan.problems
    base, dataset = plan.spec.base_model, plan.spec.dataset
    assert (base.name, base.WhichOneof("selector"), base.version) == ("smollm2", "version", 3)
    assert (dataset.name, dataset.WhichOneof("selector"), dataset.version) == (
        "facts",
        "version",
        2,
    )
    assert (plan.base.number, plan.dataset.number) == (3, 2)
    assert cache.pulled == ["smollm2:3", "facts:2"]
    assert spec.base_model.alias == "production"  # the submitted spec is left as it was
    assert planner.validate(spec) == plan.spec


def test_an_unknown_reference_is_a_violation_of_its_field(planner):
    spec = sft_spec(dataset="nope:7")
    plan = planner.plan(spec)
    assert plan.problems.fields() == ["spec.dataset"]
    (violation,) = plan.problems
    assert violation.description.startswith("nope:7: ") and "not found" in violation.description
    assert [(p.field, p.description) for p in plan.to_pb().problems] == [
        ("spec.dataset", violation.description)
    ]
    with pytest.raises(exceptions.InvalidArgument) as info:
        planner.validate(spec)
    assert info.value.violations == [violation]


def test_a_version_of_the_wrong_kind_names_the_field_and_both_kinds(planner):
    plan = planner.plan(sft_spec(base="facts", dataset="smollm2:2"))
    assert plan.problems.fields() == ["spec.base_model", "spec.dataset"]
    data, model = (v.description for v in plan.problems)
    assert "facts:2" in data and "DATASET" in data and "BASE or MERGED or ADAPTER" in data
    assert "smollm2:2" in model and "BASE" in model and "expected DATASET" in model


@pytest.fixture
def staged(cache: FakeCache, tmp_path: Path) -> FakeCache:
    """`law-lora:1`, a rank-16 LoRA adapter of `smollm2:2` on q/k/v."""
    folder = tmp_path / "law-lora"
    folder.mkdir()
    shape = {"r": 16, "lora_alpha": 32, "target_modules": ["v_proj", "q_proj", "k_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(shape))
    cache.add("law-lora", 1, registry_pb2.VERSION_KIND_ADAPTER, folder)
    cache.versions[-1][0].parents.append(parse_ref("smollm2:2"))
    return cache


def test_an_adapter_is_continued_on_its_base_with_its_own_shape(staged, tokenizer):
    planner = Planner(staged, tokenizer_loader=lambda _: tokenizer)
    spec = sft_spec(base="law-lora")
    spec.lora.Clear()
    plan = planner.plan(spec)
    assert plan.ok, list(plan.problems)
    assert (plan.base.model, plan.base.number) == ("smollm2", 2)
    assert (plan.adapter.model, plan.adapter.number) == ("law-lora", 1)
    lora = plan.spec.lora
    assert (lora.rank, lora.alpha, sorted(lora.target_modules)) == (
        16,
        32,
        ["k_proj", "q_proj", "v_proj"],
    )
    assert plan.spec.output_name == "law-lora"  # its next version
    assert (plan.spec.base_model.name, plan.spec.base_model.version) == ("law-lora", 1)


def test_continuing_an_adapter_refuses_another_shape_full_tuning_and_dora(staged, tokenizer):
    planner = Planner(staged, tokenizer_loader=lambda _: tokenizer)
    spec = sft_spec(base="law-lora")  # rank 4 on q/v: not the adapter's shape
    plan = planner.plan(spec)
    assert plan.problems.fields() == ["spec.lora.rank", "spec.lora.target_modules"]
    assert "keeps its rank 16" in next(iter(plan.problems)).description
    for tuner in (trainer_pb2.TUNER_FULL, trainer_pb2.TUNER_DORA):
        spec = sft_spec(base="law-lora")
        spec.lora.Clear()
        spec.tuner = tuner
        assert planner.plan(spec).problems.fields() == ["spec.tuner"]


def test_dataset_problems_name_file_line_and_field(planner):
    plan = planner.plan(sft_spec(dataset="law-qa"))
    assert [(v.field, v.description) for v in plan.problems] == [
        (
            "spec.dataset",
            "law_qa.jsonl:1: messages: has no assistant turn with content to learn from",
        ),
        ("spec.dataset", "law_qa.jsonl:2: messages[1].content: missing"),
    ]
    assert plan.memory is None


def test_planned_activations_follow_the_batch_and_ignore_accumulation(planner):
    one = planner.plan(sft_spec())
    accumulated = planner.plan(sft_spec(gradient_accumulation_steps=4))
    doubled = planner.plan(sft_spec(per_device_batch_size=4))
    assert one.ok and accumulated.ok and doubled.ok
    assert accumulated.memory.activations == one.memory.activations
    assert accumulated.total_steps == one.total_steps // 4
    assert doubled.memory.activations > one.memory.activations


def test_planner_auto_fits_memory_per_worker(cache, tokenizer):
    def plan_with(budget: int):
        spec = sft_spec()
        spec.tuner = trainer_pb2.TUNER_FULL
        spec.ClearField("lora")
        spec.distribution.resources.num_workers = 2
        planner = Planner(cache, memory_per_worker=budget, tokenizer_loader=lambda _: tokenizer)
        return planner.plan(spec)

    roomy = plan_with(0)
    assert (roomy.strategy, roomy.zero_stage) == (Strategy.DDP, None)
    tight = plan_with(roomy.memory.total - 1)
    assert (tight.strategy, tight.zero_stage) == (Strategy.DEEPSPEED, 2)
    assert tight.memory.total <= roomy.memory.total - 1
    assert tight.spec.distribution.strategy == trainer_pb2.DISTRIBUTION_STRATEGY_DEEPSPEED
    assert tight.spec.distribution.zero_stage == 2
    assert "strategy AUTO: DEEPSPEED ZeRO-2 for 2 workers" in tight.warnings
    hopeless = plan_with(1)
    assert (hopeless.strategy, hopeless.zero_stage) == (Strategy.DEEPSPEED, 3)
    assert any("exceeds the 0.0 GiB available" in w for w in hopeless.warnings)


def test_a_batch_too_big_for_the_worker_is_split_into_accumulated_micro_batches(cache, tokenizer):
    def plan_with(budget: int, batch: int = 8):
        planner = Planner(cache, memory_per_worker=budget, tokenizer_loader=lambda _: tokenizer)
        return planner.plan(sft_spec(per_device_batch_size=batch, max_seq_length=256))

    whole, quarter = plan_with(0), plan_with(0, batch=2)
    assert whole.memory.total > quarter.memory.total
    fitted = plan_with(quarter.memory.total)
    h = fitted.spec.hyper_parameters
    assert (h.per_device_batch_size, h.gradient_accumulation_steps) == (2, 4)
    assert fitted.total_steps == whole.total_steps  # the same effective batch
    assert fitted.memory.total <= quarter.memory.total
    assert any(
        "gradient_accumulation_steps 4 keeps the effective batch" in w for w in fitted.warnings
    )
    hopeless = plan_with(1)
    assert hopeless.spec.hyper_parameters.per_device_batch_size == 8
    assert any("exceeds the 0.0 GiB available" in w for w in hopeless.warnings)
