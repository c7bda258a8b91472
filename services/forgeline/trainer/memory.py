"""Estimating one worker's peak training memory, and choosing the strategy that fits.

The memory model counts the training state the way ZeRO's paper does (weights,
gradients, optimizer state, each divided over workers by the stage that partitions it)
plus activations per micro-batch. `choose_strategy` uses it to resolve AUTO to the
lightest strategy whose estimate fits a worker's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgeline.trainer.config import OptimizerKind, Precision, Strategy, Task, TrainConfig, Tuner
from forgeline.trainer.model_info import ModelInfo
from forgeline.trainer.recipes.lm_loss import chunk_rows_for
from forgeline.v1 import trainer_pb2

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one worker's training state."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    allocator: int = 0

    @property
    def total(self) -> int:
        """Sum of the parts."""
        return self.weights + self.gradients + self.optimizer + self.activations + self.allocator

    def to_pb(self) -> trainer_pb2.MemoryEstimate:
        """The `MemoryEstimate` message."""
        return trainer_pb2.MemoryEstimate(
            weights_bytes=self.weights,
            gradients_bytes=self.gradients,
            optimizer_bytes=self.optimizer,
            activations_bytes=self.activations,
            total_bytes=self.total,
            allocator_bytes=self.allocator,
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

    A CPU worker's resident memory also holds what the C allocator keeps of freed
    activation buffers: glibc serves tensors of up to 32 MiB from its heap and returns
    little of it, so from the first steps on the process holds about one more micro-batch
    of activations (SmolLM2-135M, LoRA, 4 x 128 tokens: the autograd graph saved 374 MiB,
    the process grew 650 MiB at the first step and 875 MiB by the twelfth). CUDA's caching
    allocator reuses its blocks from step to step, so GPU workers get no such term.
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
    allocator = 0 if on_gpu else activations
    return MemoryEstimate(int(weights), int(grads), int(optimizer), int(activations), allocator)


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
    # The loss holds one chunk of fp32 logits at a time (recipes/lm_loss.py): its logits,
    # softmax and gradient, plus the head's input and a log-probability per token.
    chunk = min(tokens, chunk_rows_for(info.vocab_size))
    logits = chunk * info.vocab_size * 4 * 3 + tokens * (h * act + 4)
    passes = 2 if cfg.task is Task.DPO else 1  # chosen and rejected in one batch
    return int((blocks + logits) * passes)


def micro_batch_tokens(cfg: TrainConfig, longest: int) -> int:
    """Tokens one worker holds activations for at once.

    A micro-batch of `batch_size` sequences, each padded to the longest one (`longest`,
    capped at `max_seq_length`), or full rows of `max_seq_length` when packing. Gradient
    accumulation runs micro-batches one after the other, so it does not add to this.
    """
    h = cfg.hyper
    return h.batch_size * (h.max_seq_length if h.packing else min(longest, h.max_seq_length))


def choose_strategy(
    info: ModelInfo, cfg: TrainConfig, micro_tokens: int, budget: int
) -> tuple[Strategy, int | None]:
    """The strategy (and ZeRO stage) a configuration runs with.

    A requested strategy is kept. AUTO runs one worker without distribution; for more
    workers it takes the first of DDP, DeepSpeed ZeRO-2, FSDP and ZeRO-3 whose estimate
    fits `budget`, or the last of them when none fits. QLoRA's quantized weights are
    sharded by FSDP on GPU workers only, and never by ZeRO-3.

    Args:
        info: The base model's sizes.
        cfg: The configuration; `cfg.dist.strategy` may be AUTO.
        micro_tokens: Tokens in one micro-batch of one worker.
        budget: Bytes a worker may use; 0 means unknown (the first candidate is taken).

    Returns:
        The strategy and, for DeepSpeed, its ZeRO stage (None otherwise).
    """
    requested = cfg.dist.strategy
    if requested is Strategy.DEEPSPEED:
        return requested, cfg.dist.zero_stage
    if requested is not Strategy.AUTO:
        return requested, None
    if cfg.dist.num_workers == 1:
        return Strategy.NONE, None
    candidates: list[tuple[Strategy, int | None]] = [(Strategy.DDP, None), (Strategy.DEEPSPEED, 2)]
    if cfg.tuner is not Tuner.QLORA or cfg.dist.use_gpu:
        candidates.append((Strategy.FSDP, None))
    if cfg.tuner is not Tuner.QLORA:
        candidates.append((Strategy.DEEPSPEED, 3))
    choice = candidates[0]
    for strategy, stage in candidates:
        choice = (strategy, stage)
        estimate = estimate_memory(info, cfg, strategy, stage or 0, micro_tokens)
        if not budget or estimate.total <= budget:
            break
    return choice


def fit_micro_batch(
    info: ModelInfo,
    cfg: TrainConfig,
    strategy: Strategy,
    zero_stage: int,
    longest: int,
    budget: int,
) -> tuple[int, int] | None:
    """A smaller micro-batch, with more accumulation, that keeps the effective batch and fits.

    Halves `batch_size` and doubles `grad_accum` until the estimate fits `budget`.

    Returns:
        (batch_size, grad_accum), or None when even one sequence per micro-batch does not
        fit (or the batch cannot be halved evenly).
    """
    from dataclasses import replace

    h = cfg.hyper
    batch, accum = h.batch_size, h.grad_accum
    while batch > 1 and batch % 2 == 0:
        batch, accum = batch // 2, accum * 2
        smaller = replace(cfg, hyper=replace(h, batch_size=batch, grad_accum=accum))
        tokens = micro_batch_tokens(smaller, longest)
        if estimate_memory(info, smaller, strategy, zero_stage, tokens).total <= budget:
            return batch, accum
    return None
