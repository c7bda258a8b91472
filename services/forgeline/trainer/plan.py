"""Planning a job before it runs: checks against the model and data, steps, tokens, memory.

`Planner.plan` resolves the references of a spec, reads the base model's config and
weight headers (no weights are loaded, see `model_info`) and the dataset, and returns a
`Plan`: every problem (each naming its field, dataset problems naming file, line and
field), the resolved spec to store, the run's size, and an estimate of each worker's peak
memory (`memory`). The same plan decides the strategy when the spec says AUTO.

A spec may start from an ADAPTER: the job then continues training that adapter on its own
base (`parents[0]`), with the adapter's shape (rank, alpha, targets, DoRA) written into the
stored spec; a spec that asks for another shape is refused, since the trained matrices
would not fit it. To train a new adapter on top of one, merge it first and start from the
MERGED version.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.exceptions import Violations
from forgeline.client.labels import label
from forgeline.client.refs import format_ref, pinned
from forgeline.trainer import data as data_mod
from forgeline.trainer.config import (
    DEFAULT_MAX_SEQ_LENGTH,
    DataFormat,
    Strategy,
    Task,
    TrainConfig,
    check_spec,
    data_format_of,
    fill_defaults,
    format_to_pb,
    strategy_to_pb,
    task_of,
)
from forgeline.trainer.memory import (
    GIB,
    MemoryEstimate,
    choose_strategy,
    estimate_memory,
    fit_micro_batch,
    micro_batch_tokens,
)
from forgeline.trainer.model_info import ModelInfo, is_head_module, read_model_info
from forgeline.trainer.targets import (
    ALL_LINEAR,
    missing_targets,
    module_names_from_weights,
    resolve_targets,
)
from forgeline.v1 import registry_pb2, trainer_pb2

__all__ = [
    "MemoryEstimate",
    "ModelInfo",
    "Plan",
    "Planner",
    "estimate_memory",
    "read_model_info",
    "steps_for",
]

log = logging.getLogger(__name__)

# Examples tokenized to measure lengths; larger datasets are extrapolated from these.
TOKENIZE_SAMPLE = 2000
_MODEL_KINDS = (registry_pb2.VERSION_KIND_BASE, registry_pb2.VERSION_KIND_MERGED)
_START_KINDS = (*_MODEL_KINDS, registry_pb2.VERSION_KIND_ADAPTER)
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Plan:
    """What a spec would do, or why it cannot run."""

    spec: trainer_pb2.TrainJobSpec
    problems: Violations = field(default_factory=Violations)
    warnings: list[str] = field(default_factory=list)
    strategy: Strategy = Strategy.NONE
    zero_stage: int | None = None
    memory: MemoryEstimate | None = None
    num_examples: int = 0
    num_sequences: int = 0
    total_tokens: int = 0
    total_steps: int = 0
    base: registry_pb2.Version | None = None
    dataset: registry_pb2.Version | None = None
    adapter: registry_pb2.Version | None = None

    @property
    def ok(self) -> bool:
        """Whether the spec can run."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raises:
        InvalidArgument: with every problem, when there is any.
        """
        self.problems.raise_if_any()

    def to_pb(self) -> trainer_pb2.PlanTrainJobResponse:
        """The `PlanTrainJobResponse` message."""
        resp = trainer_pb2.PlanTrainJobResponse(
            strategy=strategy_to_pb(self.strategy),
            total_tokens=self.total_tokens,
            num_examples=self.num_examples,
            total_steps=self.total_steps,
            resolved_spec=self.spec,
            warnings=self.warnings,
            problems=[
                trainer_pb2.PlanProblem(field=p.field, description=p.description)
                for p in self.problems
            ],
        )
        if self.zero_stage is not None:
            resp.zero_stage = self.zero_stage
        if self.memory is not None:
            resp.memory_per_worker.CopyFrom(self.memory.to_pb())
        return resp


def steps_for(num_sequences: int, cfg: TrainConfig) -> int:
    """Optimizer steps a run takes: `max_steps`, or epochs over each worker's shard."""
    if cfg.hyper.max_steps:
        return cfg.hyper.max_steps
    per_worker = math.ceil(num_sequences / max(1, cfg.dist.num_workers))
    micro = math.ceil(per_worker / cfg.hyper.batch_size)
    return max(1, math.ceil(micro / cfg.hyper.grad_accum)) * cfg.hyper.epochs


class Planner:
    """Checks specs against the registry's models and data and sizes the runs.

    Args:
        cache: Where references are resolved and pulled from.
        gpus_available: Whether the cluster has GPUs.
        cpu_bf16: Whether the cluster's CPUs compute bf16 natively (CPU jobs default to it).
        memory_per_worker: Bytes a worker may use when the spec does not say; AUTO picks
            the lightest strategy whose estimate fits.
        tokenizer_loader: Loads a tokenizer from a model folder (tests may stub it).
    """

    def __init__(
        self,
        cache: VersionCache,
        *,
        gpus_available: bool = False,
        cpu_bf16: bool = False,
        memory_per_worker: int = 0,
        tokenizer_loader: Callable[[Path], object] | None = None,
    ):
        self.cache = cache
        self.gpus_available = gpus_available
        self.cpu_bf16 = cpu_bf16
        self.memory_per_worker = memory_per_worker
        self._load_tokenizer = tokenizer_loader or _load_tokenizer

    def validate(self, spec: trainer_pb2.TrainJobSpec) -> trainer_pb2.TrainJobSpec:
        """Plans `spec` and returns the resolved spec to store.

        Raises:
            InvalidArgument: every problem of the spec and its dataset.
        """
        plan = self.plan(spec)
        plan.raise_for_problems()
        return plan.spec

    def plan(self, spec: trainer_pb2.TrainJobSpec) -> Plan:
        """Checks a spec against its model and data and estimates the run."""
        report = check_spec(spec, gpus_available=self.gpus_available)
        resolved = fill_defaults(spec, cpu_bf16=self.cpu_bf16)
        plan = Plan(spec=resolved, problems=report.problems, warnings=report.warnings)
        task = task_of(spec) or Task.SFT
        base = self._resolve(plan, resolved.base_model, "spec.base_model", _START_KINDS)
        if base is not None and base.kind == registry_pb2.VERSION_KIND_ADAPTER:
            plan.adapter = base
            base = self._continued(plan, spec, base)
        dataset = self._resolve(
            plan, resolved.dataset, "spec.dataset", (registry_pb2.VERSION_KIND_DATASET,)
        )
        if resolved.eval_dataset.name:
            self._resolve(
                plan,
                resolved.eval_dataset,
                "spec.eval_dataset",
                (registry_pb2.VERSION_KIND_DATASET,),
            )
        if resolved.dpo.reference_model.name:
            self._resolve(
                plan, resolved.dpo.reference_model, "spec.dpo.reference_model", _MODEL_KINDS
            )
        plan.base, plan.dataset = base, dataset

        info = None
        base_dir = None
        if base is not None:
            base_dir = self.cache.pull(pinned(base)).path
            try:
                info = read_model_info(base_dir)
            except exceptions.FailedPrecondition as exc:
                plan.problems.add("spec.base_model", exc.message)
        if info is not None:
            self._check_model(plan, info)

        loaded = None
        if dataset is not None and spec.task:
            folder = self.cache.pull(pinned(dataset)).path
            loaded = data_mod.load_dataset(folder, task, data_format_of(resolved))
            for problem in loaded.describe_problems():
                plan.problems.add("spec.dataset", problem)
            if loaded.format is not DataFormat.AUTO:
                if resolved.dataset_format == trainer_pb2.DATASET_FORMAT_AUTO:
                    plan.warnings.append(f"dataset format detected: {loaded.format.name}")
                resolved.dataset_format = format_to_pb(loaded.format)
            plan.num_examples = len(loaded.examples)
        if resolved.eval_dataset.name and not plan.problems:
            eval_ref = f"{resolved.eval_dataset.name}:{resolved.eval_dataset.version}"
            eval_set = data_mod.load_dataset(self.cache.pull(eval_ref).path, task, loaded.format)
            for problem in eval_set.describe_problems():
                plan.problems.add("spec.eval_dataset", problem)

        if plan.problems or info is None or loaded is None or base_dir is None:
            return plan
        self._size(plan, info, base_dir, loaded)
        if (
            plan.strategy is Strategy.DEEPSPEED
            and not resolved.distribution.resources.gpus_per_worker
            and not spec.hyper_parameters.precision
        ):
            # As `fill_defaults` does for a requested DeepSpeed: fp32 on CPU workers.
            resolved.hyper_parameters.precision = trainer_pb2.PRECISION_FP32
        return plan

    # -- steps of `plan` -----------------------------------------------------------------------

    def _resolve(
        self, plan: Plan, ref, path: str, kinds: tuple[int, ...]
    ) -> registry_pb2.Version | None:
        if not ref.name or path in plan.problems.fields():
            return None
        text = ref.name
        if ref.WhichOneof("selector") == "version":
            text = f"{ref.name}:{ref.version}"
        elif ref.WhichOneof("selector") == "alias":
            text = f"{ref.name}@{ref.alias}"
        try:
            version = self.cache.resolve(text)
        except (exceptions.NotFound, exceptions.FailedPrecondition) as exc:
            plan.problems.add(path, f"{text}: {exc.message}")
            return None
        if version.kind not in kinds:
            wanted = " or ".join(label(registry_pb2.VersionKind, k) for k in kinds)
            kind = label(registry_pb2.VersionKind, version.kind)
            plan.problems.add(path, f"{pinned(version)} is a {kind} version; expected {wanted}")
            return None
        # Pin the reference, so a restarted job trains on exactly the same inputs.
        ref.ClearField("alias")
        ref.version = version.number
        return version

    def _continued(
        self, plan: Plan, asked: trainer_pb2.TrainJobSpec, adapter: registry_pb2.Version
    ) -> registry_pb2.Version | None:
        """Checks a spec that continues `adapter`; returns the adapter's base.

        The adapter's shape replaces the spec's, and the result defaults to the adapter's
        own name (its next version).
        """
        spec, name = plan.spec, pinned(adapter)
        if spec.tuner == trainer_pb2.TUNER_FULL:
            plan.problems.add(
                "spec.tuner",
                f"{name} is an adapter: FULL tuning cannot continue it; merge it "
                "(forgeline merge) and tune the MERGED version",
            )
            return None
        if not adapter.parents:
            plan.problems.add("spec.base_model", f"{name} records no base model")
            return None
        try:
            base = self.cache.resolve(format_ref(adapter.parents[0]))
        except (exceptions.NotFound, exceptions.FailedPrecondition) as exc:
            plan.problems.add(
                "spec.base_model",
                f"the base of {name}, {format_ref(adapter.parents[0])}: {exc.message}",
            )
            return None
        if base.kind not in _MODEL_KINDS:
            plan.problems.add(
                "spec.base_model",
                f"{name} was trained on {pinned(base)}, which is not a BASE or MERGED model",
            )
            return None
        config_file = self.cache.pull(name).path / ADAPTER_CONFIG
        try:
            shape = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            plan.problems.add("spec.base_model", f"{name}: unreadable {ADAPTER_CONFIG}: {exc}")
            return None
        targets = shape.get("target_modules") or []
        targets = [targets] if isinstance(targets, str) else sorted(targets)
        kept = {
            "rank": int(shape.get("r") or 8),
            "alpha": int(shape.get("lora_alpha") or 0),
            "target_modules": targets,
            "modules_to_save": sorted(shape.get("modules_to_save") or []),
        }
        asked_lora = asked.lora
        for key, value in kept.items():
            given = getattr(asked_lora, key)
            given = sorted(given) if key in ("target_modules", "modules_to_save") else given
            if given and given != value and not (key == "target_modules" and given == [ALL_LINEAR]):
                plan.problems.add(
                    f"spec.lora.{key}",
                    f"continuing {name} keeps its {key} {value}; to train an adapter of "
                    "another shape, merge it and start from the MERGED version",
                )
        dora = bool(shape.get("use_dora"))
        if dora != (spec.tuner == trainer_pb2.TUNER_DORA):
            plan.problems.add(
                "spec.tuner",
                f"{name} is a {'DoRA' if dora else 'LoRA'} adapter; continue it with "
                f"{'DORA' if dora else 'LORA or QLORA'}",
            )
        spec.lora.rank, spec.lora.alpha = kept["rank"], kept["alpha"] or 2 * kept["rank"]
        del spec.lora.target_modules[:], spec.lora.modules_to_save[:]
        spec.lora.target_modules.extend(targets)
        spec.lora.modules_to_save.extend(kept["modules_to_save"])
        if not asked.output_name:
            spec.output_name = adapter.model
        return base

    def _check_model(self, plan: Plan, info: ModelInfo) -> None:
        spec = plan.spec
        if spec.tuner != trainer_pb2.TUNER_FULL:
            targets = resolve_targets(info.model_type, list(spec.lora.target_modules))
            modules = module_names_from_weights(info.weight_names)
            missing = missing_targets(targets, modules)
            if missing:
                leaves = sorted({m.rsplit(".", 1)[-1] for m in modules if not is_head_module(m)})
                plan.problems.add(
                    "spec.lora.target_modules",
                    f"no module named {', '.join(missing)} in this "
                    f"{info.model_type or 'model'}; "
                    f"its modules include {', '.join(leaves[:16])} (or use all-linear)",
                )
            del spec.lora.target_modules[:]
            spec.lora.target_modules.extend(targets)
        h = spec.hyper_parameters
        if not h.max_seq_length:
            h.max_seq_length = min(
                info.max_positions or DEFAULT_MAX_SEQ_LENGTH, DEFAULT_MAX_SEQ_LENGTH
            )
        elif info.max_positions and h.max_seq_length > info.max_positions:
            plan.problems.add(
                "spec.hyper_parameters.max_seq_length",
                f"{h.max_seq_length} exceeds the model's context of {info.max_positions} tokens",
            )

    def _size(self, plan: Plan, info: ModelInfo, base_dir: Path, loaded: data_mod.Dataset) -> None:
        spec = plan.spec
        cfg = TrainConfig.from_pb(spec)
        sample = loaded.examples[:TOKENIZE_SAMPLE]
        tokenizer = self._load_tokenizer(base_dir)
        tokenized = data_mod.tokenize_dataset(tokenizer, sample, cfg.hyper.max_seq_length)
        scale = len(loaded.examples) / max(1, len(sample))
        if cfg.hyper.packing and cfg.task is not Task.DPO:
            rows = data_mod.pack(tokenized, cfg.hyper.max_seq_length)
            sequences = math.ceil(len(rows) * scale)
        else:
            sequences = math.ceil(len(tokenized) * scale)
        if sample and not tokenized:
            plan.problems.add(
                "spec.dataset",
                "no example keeps an answer token after truncation; raise max_seq_length",
            )
            return
        tokens_per_epoch = data_mod.count_tokens(tokenized) * scale
        plan.num_sequences = sequences
        plan.total_steps = steps_for(sequences, cfg)
        per_step = cfg.hyper.batch_size * cfg.hyper.grad_accum * cfg.dist.num_workers
        epochs_done = (
            plan.total_steps * per_step / max(1, sequences)
            if cfg.hyper.max_steps
            else cfg.hyper.epochs
        )
        plan.total_tokens = int(tokens_per_epoch * epochs_done)
        longest = max((data_mod.row_length(t) for t in tokenized), default=cfg.hyper.max_seq_length)
        micro_tokens = micro_batch_tokens(cfg, longest)
        strategy, stage = self._choose_strategy(plan, cfg, info, micro_tokens)
        plan.strategy, plan.zero_stage = strategy, stage
        plan.memory = estimate_memory(info, cfg, strategy, stage or 0, micro_tokens)
        spec.distribution.strategy = strategy_to_pb(strategy)
        if strategy is Strategy.DEEPSPEED:
            spec.distribution.zero_stage = stage
        budget = cfg.dist.memory_bytes_per_worker or self.memory_per_worker
        fitted = None
        if budget and plan.memory.total > budget:
            fitted = fit_micro_batch(info, cfg, strategy, stage or 0, longest, budget)
        if fitted is not None:
            h = spec.hyper_parameters
            plan.warnings.append(
                f"per_device_batch_size {h.per_device_batch_size} does not fit "
                f"{budget / GIB:.1f} GiB per worker: {fitted[0]} per micro-batch with "
                f"gradient_accumulation_steps {fitted[1]} keeps the effective batch"
            )
            h.per_device_batch_size, h.gradient_accumulation_steps = fitted
            cfg = TrainConfig.from_pb(spec)
            micro_tokens = micro_batch_tokens(cfg, longest)
            plan.memory = estimate_memory(info, cfg, strategy, stage or 0, micro_tokens)
        elif budget and plan.memory.total > budget:
            plan.warnings.append(
                f"estimated {plan.memory.total / GIB:.1f} GiB per worker exceeds the "
                f"{budget / GIB:.1f} GiB available; use more workers, ZeRO-3, QLoRA or a "
                f"smaller batch"
            )
        if cfg.dist.offload_optimizer and not cfg.dist.use_gpu:
            plan.warnings.append("offloading saves accelerator memory; CPU workers gain nothing")

    def _choose_strategy(
        self, plan: Plan, cfg: TrainConfig, info: ModelInfo, micro_tokens: int
    ) -> tuple[Strategy, int | None]:
        budget = cfg.dist.memory_bytes_per_worker or self.memory_per_worker
        strategy, stage = choose_strategy(info, cfg, micro_tokens, budget)
        if cfg.dist.strategy is Strategy.AUTO:
            if strategy is Strategy.NONE:
                plan.warnings.append("strategy AUTO: one worker, no distribution (NONE)")
            else:
                name = strategy.name + (f" ZeRO-{stage}" if stage is not None else "")
                plan.warnings.append(f"strategy AUTO: {name} for {cfg.dist.num_workers} workers")
        return strategy, stage


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)
