"""Planning a job before it runs: checks against the model and data, steps, tokens, memory.

`Planner.plan` resolves the references of a spec, reads the base model's config and
weight headers (no weights are loaded) and the dataset, and returns a `Plan`: every
problem (each naming its field, dataset problems naming file, line and field), the
resolved spec to store, the run's size, and an estimate of each worker's peak memory.
The same plan decides the strategy when the spec says AUTO.

The memory model counts the training state the way ZeRO's paper does (weights,
gradients, optimizer state, each divided over workers by the stage that partitions it)
plus activations per micro-batch; `tests/trainer/test_plan.py` holds it against the
peak measured in a real run.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.exceptions import FieldViolation
from forgeline.client.labels import label
from forgeline.client.refs import pinned
from forgeline.trainer import data as data_mod
from forgeline.trainer.config import (
    DEFAULT_MAX_SEQ_LENGTH,
    DataFormat,
    OptimizerKind,
    Precision,
    Strategy,
    Task,
    TrainConfig,
    Tuner,
    check_spec,
    data_format_of,
    fill_defaults,
    format_to_pb,
    strategy_to_pb,
    task_of,
)
from forgeline.trainer.targets import (
    ALL_LINEAR,
    missing_targets,
    module_names_from_weights,
    resolve_targets,
)
from forgeline.v1 import registry_pb2, trainer_pb2

log = logging.getLogger(__name__)

# Examples tokenized to measure lengths; larger datasets are extrapolated from these.
TOKENIZE_SAMPLE = 2000
_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1}
_MODEL_KINDS = (registry_pb2.VERSION_KIND_BASE, registry_pb2.VERSION_KIND_MERGED)
GIB = 1024**3


# -- the base model, from its files ---------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """Sizes of a model read from `config.json` and the safetensors headers."""

    model_type: str
    num_params: int
    linear_params: int  # 2-D weights inside the transformer blocks (what LoRA/QLoRA touch)
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    max_positions: int
    weight_names: tuple[str, ...]
    # (module name, output features, input features) of every 2-D block weight.
    linear_shapes: tuple[tuple[str, int, int], ...] = ()
    tied_embeddings: bool = False

    def adapted(self, targets: tuple[str, ...]) -> list[tuple[int, int]]:
        """(out, in) features of every linear layer that `targets` selects."""
        everything = ALL_LINEAR in targets
        return [
            (rows, cols)
            for module, rows, cols in self.linear_shapes
            if everything or module.rsplit(".", 1)[-1] in targets
        ]

    def lora_params(self, rank: int, targets: tuple[str, ...]) -> int:
        """Trainable parameters of rank-`rank` adapters on `targets`."""
        return sum(rank * (rows + cols) for rows, cols in self.adapted(targets))


def _is_head(module: str) -> bool:
    return module.endswith("lm_head") or "embed" in module


def read_model_info(folder: Path) -> ModelInfo:
    """Reads a Hugging Face model folder's config and weight headers.

    Raises:
        FailedPrecondition: the folder has no config.json or no safetensors weights.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise exceptions.FailedPrecondition(f"{folder.name} has no config.json; is it a model?")
    config = json.loads(config_path.read_text())
    text = config.get("text_config", config)
    shapes: dict[str, tuple[int, ...]] = {}
    num_params = 0
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise exceptions.FailedPrecondition(f"{folder.name} has no .safetensors weights")
    for file in files:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            shape = tuple(meta["shape"])
            shapes[name] = shape
            num_params += math.prod(shape)
    linear = tuple(
        (n.rsplit(".", 1)[0], s[0], s[1])
        for n, s in shapes.items()
        if len(s) == 2 and n.endswith(".weight") and not _is_head(n.rsplit(".", 1)[0])
    )
    return ModelInfo(
        model_type=str(config.get("model_type", "")),
        num_params=num_params,
        linear_params=sum(rows * cols for _, rows, cols in linear),
        hidden_size=int(text.get("hidden_size") or text.get("n_embd") or 0),
        intermediate_size=int(text.get("intermediate_size") or 4 * (text.get("hidden_size") or 0)),
        num_layers=int(text.get("num_hidden_layers") or text.get("n_layer") or 0),
        num_heads=int(text.get("num_attention_heads") or text.get("n_head") or 0),
        vocab_size=int(text.get("vocab_size") or 0),
        max_positions=int(
            text.get("max_position_embeddings")
            or text.get("n_positions")
            or text.get("seq_length")
            or 0
        ),
        weight_names=tuple(shapes),
        linear_shapes=linear,
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


# -- memory ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one worker's training state."""

    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        """Sum of the parts."""
        return self.weights + self.gradients + self.optimizer + self.activations

    def to_pb(self) -> trainer_pb2.MemoryEstimate:
        """The `MemoryEstimate` message."""
        return trainer_pb2.MemoryEstimate(
            weights_bytes=self.weights,
            gradients_bytes=self.gradients,
            optimizer_bytes=self.optimizer,
            activations_bytes=self.activations,
            total_bytes=self.total,
        )


def _bytes(precision: Precision) -> int:
    return 4 if precision is Precision.FP32 else 2


def estimate_memory(
    info: ModelInfo,
    cfg: TrainConfig,
    strategy: Strategy,
    zero_stage: int,
    tokens_per_micro_batch: int,
) -> MemoryEstimate:
    """Estimates one worker's peak memory for a configuration.

    Frozen base weights are held in the training precision (or 4/8 bits for QLoRA);
    trainable weights, their gradients and AdamW's two moments in fp32. ZeRO-1 divides
    optimizer state over the workers, ZeRO-2 gradients too, ZeRO-3 weights too; offloaded
    state leaves the accelerator (on CPU workers it stays in the same memory, so it
    counts). Activations follow Korthikanti et al.'s per-layer count, with the attention
    scores term dropped (PyTorch's fused attention does not keep them), plus the logits.
    """
    world = max(1, cfg.dist.num_workers)
    precision = cfg.hyper.precision
    on_gpu = cfg.dist.use_gpu
    if cfg.tuner is Tuner.FULL:
        trainable = info.num_params
        frozen_bytes = 0
    else:
        trainable = info.lora_params(cfg.lora.rank, cfg.lora.target_modules)
        if cfg.tuner is Tuner.DORA:
            # DoRA adds one magnitude per output feature of each adapted layer.
            trainable += sum(rows for rows, _ in info.adapted(cfg.lora.target_modules))
        if cfg.tuner is Tuner.QLORA and cfg.quant is not None:
            bits = cfg.quant.bits
            # 4-bit: one fp32 absmax per 64 weights (0.5 bit), ~0.127 bit with double quant.
            overhead = (0.127 if cfg.quant.double_quant else 0.5) if bits == 4 else 0.0
            quantized = info.linear_params * (bits + overhead) / 8
            rest = (info.num_params - info.linear_params) * _bytes(cfg.quant.compute_dtype)
            frozen_bytes = int(quantized + rest)
        else:
            frozen_bytes = info.num_params * _bytes(precision)
    weights = frozen_bytes + trainable * 4
    grads = trainable * 4
    state_per_param = {
        OptimizerKind.ADAMW: 8,
        OptimizerKind.PAGED_ADAMW_32BIT: 8,
        OptimizerKind.PAGED_ADAMW_8BIT: 2,
        OptimizerKind.SGD: 0,
    }[cfg.hyper.optimizer]
    optimizer = trainable * state_per_param
    if strategy is Strategy.DEEPSPEED:
        if precision is not Precision.FP32:
            optimizer += trainable * 4  # DeepSpeed keeps fp32 master weights beside bf16 ones
        if zero_stage >= 1:
            optimizer //= world
        if zero_stage >= 2:
            grads //= world
        if zero_stage >= 3:
            weights //= world
        if on_gpu and cfg.dist.offload_optimizer:
            optimizer = 0
        if on_gpu and cfg.dist.offload_params and zero_stage == 3:
            weights = 0
    elif strategy is Strategy.FSDP:
        weights, grads, optimizer = weights // world, grads // world, optimizer // world
    activations = _activation_bytes(info, cfg, tokens_per_micro_batch)
    return MemoryEstimate(int(weights), int(grads), int(optimizer), int(activations))


def _activation_bytes(info: ModelInfo, cfg: TrainConfig, tokens: int) -> int:
    act = 2 if cfg.hyper.precision is not Precision.FP32 else 4
    h, inter, layers = info.hidden_size, info.intermediate_size, info.num_layers
    # Per token per layer: norms, q/k/v/o inputs and outputs, the attention output, and the
    # MLP's gate, up, activation and product (Llama-style; close for other families).
    per_layer = (10 * h + 4 * inter) * act
    if cfg.hyper.gradient_checkpointing:
        blocks = tokens * (h * act * layers + per_layer)  # one layer recomputed at a time
    else:
        blocks = tokens * per_layer * layers
    # Logits in fp32, their softmax and its gradient: three vocabulary-wide tensors.
    logits = tokens * info.vocab_size * 4 * 3
    passes = 2 if cfg.task is Task.DPO else 1  # chosen and rejected in one batch
    return int((blocks + logits) * passes)


# -- the plan -------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a spec would do, or why it cannot run."""

    spec: trainer_pb2.TrainJobSpec
    problems: list[FieldViolation] = field(default_factory=list)
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

    @property
    def ok(self) -> bool:
        """Whether the spec can run."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raises:
        InvalidArgument: with every problem, when there is any.
        """
        if self.problems:
            raise exceptions.InvalidArgument.from_violations(self.problems)

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
        memory_per_worker: Bytes a worker may use when the spec does not say; AUTO picks
            the lightest strategy whose estimate fits.
        tokenizer_loader: Loads a tokenizer from a model folder (tests may stub it).
    """

    def __init__(
        self,
        cache: VersionCache,
        *,
        gpus_available: bool = False,
        memory_per_worker: int = 0,
        tokenizer_loader: Callable[[Path], object] | None = None,
    ):
        self.cache = cache
        self.gpus_available = gpus_available
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
        resolved = fill_defaults(spec)
        plan = Plan(spec=resolved, problems=list(report.problems), warnings=list(report.warnings))
        task = task_of(spec) or Task.SFT
        base = self._resolve(plan, resolved.base_model, "spec.base_model", _MODEL_KINDS)
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
                plan.problems.append(FieldViolation("spec.base_model", exc.message))
        if info is not None:
            self._check_model(plan, info)

        loaded = None
        if dataset is not None and spec.task:
            folder = self.cache.pull(pinned(dataset)).path
            loaded = data_mod.load_dataset(folder, task, data_format_of(resolved))
            for problem in loaded.describe_problems():
                plan.problems.append(FieldViolation("spec.dataset", problem))
            if loaded.format is not DataFormat.AUTO:
                if resolved.dataset_format == trainer_pb2.DATASET_FORMAT_AUTO:
                    plan.warnings.append(f"dataset format detected: {loaded.format.name}")
                resolved.dataset_format = format_to_pb(loaded.format)
            plan.num_examples = len(loaded.examples)
        if resolved.eval_dataset.name and not plan.problems:
            eval_ref = f"{resolved.eval_dataset.name}:{resolved.eval_dataset.version}"
            eval_set = data_mod.load_dataset(self.cache.pull(eval_ref).path, task, loaded.format)
            for problem in eval_set.describe_problems():
                plan.problems.append(FieldViolation("spec.eval_dataset", problem))

        if plan.problems or info is None or loaded is None or base_dir is None:
            return plan
        self._size(plan, info, base_dir, loaded)
        return plan

    # -- steps of `plan` -----------------------------------------------------------------------

    def _resolve(
        self, plan: Plan, ref, path: str, kinds: tuple[int, ...]
    ) -> registry_pb2.Version | None:
        if not ref.name or any(p.field == path for p in plan.problems):
            return None
        text = ref.name
        if ref.WhichOneof("selector") == "version":
            text = f"{ref.name}:{ref.version}"
        elif ref.WhichOneof("selector") == "alias":
            text = f"{ref.name}@{ref.alias}"
        try:
            version = self.cache.resolve(text)
        except (exceptions.NotFound, exceptions.FailedPrecondition) as exc:
            plan.problems.append(FieldViolation(path, f"{text}: {exc.message}"))
            return None
        if version.kind not in kinds:
            wanted = " or ".join(label(registry_pb2.VersionKind, k) for k in kinds)
            kind = label(registry_pb2.VersionKind, version.kind)
            plan.problems.append(
                FieldViolation(path, f"{pinned(version)} is a {kind} version; expected {wanted}")
            )
            return None
        # Pin the reference, so a restarted job trains on exactly the same inputs.
        ref.ClearField("alias")
        ref.version = version.number
        return version

    def _check_model(self, plan: Plan, info: ModelInfo) -> None:
        spec = plan.spec
        if spec.tuner != trainer_pb2.TUNER_FULL:
            targets = resolve_targets(info.model_type, list(spec.lora.target_modules))
            modules = module_names_from_weights(info.weight_names)
            missing = missing_targets(targets, modules)
            if missing:
                leaves = sorted({m.rsplit(".", 1)[-1] for m in modules if not _is_head(m)})
                plan.problems.append(
                    FieldViolation(
                        "spec.lora.target_modules",
                        f"no module named {', '.join(missing)} in this "
                        f"{info.model_type or 'model'}; "
                        f"its modules include {', '.join(leaves[:16])} (or use all-linear)",
                    )
                )
            del spec.lora.target_modules[:]
            spec.lora.target_modules.extend(targets)
        h = spec.hyper_parameters
        if not h.max_seq_length:
            h.max_seq_length = min(
                info.max_positions or DEFAULT_MAX_SEQ_LENGTH, DEFAULT_MAX_SEQ_LENGTH
            )
        elif info.max_positions and h.max_seq_length > info.max_positions:
            plan.problems.append(
                FieldViolation(
                    "spec.hyper_parameters.max_seq_length",
                    f"{h.max_seq_length} exceeds the model's context "
                    f"of {info.max_positions} tokens",
                )
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
            plan.problems.append(
                FieldViolation(
                    "spec.dataset",
                    "no example keeps an answer token after truncation; raise max_seq_length",
                )
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
        longest = max((_length(t) for t in tokenized), default=cfg.hyper.max_seq_length)
        micro_tokens = cfg.hyper.batch_size * (
            cfg.hyper.max_seq_length
            if cfg.hyper.packing
            else min(longest, cfg.hyper.max_seq_length)
        )
        strategy, stage = self._choose_strategy(plan, cfg, info, micro_tokens)
        plan.strategy, plan.zero_stage = strategy, stage
        plan.memory = estimate_memory(info, cfg, strategy, stage or 0, micro_tokens)
        spec.distribution.strategy = strategy_to_pb(strategy)
        if strategy is Strategy.DEEPSPEED:
            spec.distribution.zero_stage = stage
        budget = cfg.dist.memory_bytes_per_worker or self.memory_per_worker
        if budget and plan.memory.total > budget:
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
        requested = cfg.dist.strategy
        if requested is Strategy.DEEPSPEED:
            return requested, cfg.dist.zero_stage
        if requested is not Strategy.AUTO:
            return requested, None
        if cfg.dist.num_workers == 1:
            plan.warnings.append("strategy AUTO: one worker, no distribution (NONE)")
            return Strategy.NONE, None
        budget = cfg.dist.memory_bytes_per_worker or self.memory_per_worker
        candidates: list[tuple[Strategy, int | None]] = [(Strategy.DDP, None)]
        if cfg.tuner is not Tuner.QLORA:
            candidates += [(Strategy.DEEPSPEED, 2), (Strategy.DEEPSPEED, 3)]
        else:
            candidates += [(Strategy.DEEPSPEED, 2)]
        choice = candidates[0]
        for strategy, stage in candidates:
            choice = (strategy, stage)
            estimate = estimate_memory(info, cfg, strategy, stage or 0, micro_tokens)
            if not budget or estimate.total <= budget:
                break
        name = choice[0].name + (f" ZeRO-{choice[1]}" if choice[1] is not None else "")
        plan.warnings.append(f"strategy AUTO: {name} for {cfg.dist.num_workers} workers")
        return choice


def _length(item) -> int:
    if isinstance(item, data_mod.Tokenized):
        return len(item.input_ids)
    if isinstance(item, data_mod.TokenizedPair):
        return len(item.prompt_ids) + max(len(item.chosen_ids), len(item.rejected_ids))
    return len(item["input_ids"])


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)
