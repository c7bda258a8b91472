"""Next-token log-probabilities without materialising the full-vocabulary logits.

A causal LM's head turns N hidden states into N x V logits. For small models with large
vocabularies these dominate training memory: SmolLM2-135M on 4 x 256 tokens has 192 MiB
of fp32 logits, and the plain loss keeps a log-softmax of that size for backward. Here the
head computes, a chunk of rows at a time, only what a loss needs (each position's
log-probability of its target token) and keeps one log-sum-exp per row; backward
recomputes each chunk's logits. Positions whose target is `IGNORE_INDEX` are skipped: they
give 0 and no gradient.

Precision is the plain path's: the projection runs in the dtype the plain head would use
(the autocast dtype when autocast is on, else the weight's), the softmax in fp32.

`LogProbHead` replaces a model's `nn.Linear` head and owns the very same weight (and bias)
Parameter, so weight tying, state-dict keys and saved files are unchanged, and called
normally it returns logits. Inside `scoring`, which hands it the targets of one forward
call, it returns the per-position log-probabilities instead. The loss is thus computed
inside the model's forward, where DDP, FSDP (`fully_shard`, the head in the root unit) and
DeepSpeed ZeRO-3 (module hooks) have the weight gathered, and the output's backward hooks
gather it again before the head's backward runs.

The plain path (full logits) remains for heads that cannot be replaced: one adapted by
LoRA, trained as a copy (`modules_to_save`), quantized, or any other type than a plain
`nn.Linear`. `install_logprob_head` reports which path a model takes and
`next_token_logps` takes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forgeline.trainer.data import IGNORE_INDEX

# Rows per chunk are chosen so one chunk of fp32 logits stays near this size.
CHUNK_BYTES = 32 * 1024 * 1024

FULL_LOGITS_NOTE = (
    "the output head is not a plain linear layer (adapted, trained as a copy or quantized): "
    "the loss is computed from full logits"
)


def chunk_rows_for(vocab_size: int) -> int:
    """Rows per chunk for a vocabulary: a chunk's fp32 logits stay within `CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // (4 * vocab_size))


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


class _ChunkedLogProbs(torch.autograd.Function):
    """log_softmax(hidden @ weight.T + bias)[target] per row, one chunk of rows at a time."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_rows):
        dtype = _compute_dtype(hidden, weight)
        rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        picked = targets.index_select(0, rows)
        out = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty(rows.numel(), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            for start in range(0, rows.numel(), chunk_rows):
                chunk = rows[start : start + chunk_rows]
                logits = F.linear(hidden.index_select(0, chunk).to(dtype), w, b).float()
                norm = torch.logsumexp(logits, -1)
                lse[start : start + chunk.numel()] = norm
                target = logits.gather(1, picked[start : start + chunk.numel(), None])
                out[chunk] = target.squeeze(1) - norm
        ctx.save_for_backward(hidden, weight, bias, rows, picked, lse)
        ctx.chunk_rows, ctx.dtype = chunk_rows, dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, rows, picked, lse = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        dtype, step = ctx.dtype, ctx.chunk_rows
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        # Weight and bias gradients sum over chunks: accumulated in fp32.
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            for start in range(0, rows.numel(), step):
                chunk = rows[start : start + step]
                n = chunk.numel()
                h = hidden.index_select(0, chunk).to(dtype)
                logits = F.linear(h, w, b).float()
                g = grad_out.index_select(0, chunk).float()
                # d log p(t) / d logits = onehot(t) - softmax, scaled by the incoming grad.
                dlogits = logits.sub_(lse[start : start + n, None]).exp_().mul_(-g[:, None])
                dlogits[torch.arange(n, device=g.device), picked[start : start + n]] += g
                if grad_bias is not None:
                    grad_bias += dlogits.sum(0)
                dlogits = dlogits.to(dtype)
                if grad_hidden is not None:
                    grad_hidden.index_copy_(0, chunk, (dlogits @ w).to(hidden.dtype))
                if grad_weight is None:
                    continue
                if dtype == torch.float32:
                    grad_weight.addmm_(dlogits.t(), h)
                else:
                    grad_weight += dlogits.t() @ h
        return (
            grad_hidden,
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            None,
            None,
        )


def chunked_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_rows: int,
) -> torch.Tensor:
    """Each row's log-probability of its target under a linear head, in chunks of rows.

    Args:
        hidden: (N, H) hidden states.
        weight: (V, H) output projection.
        bias: (V,) or None.
        targets: (N,) token ids; `IGNORE_INDEX` rows give 0 and no gradient.
        chunk_rows: Rows whose (chunk_rows, V) logits exist at once.

    Returns:
        (N,) fp32 log-probabilities.
    """
    return _ChunkedLogProbs.apply(hidden, weight, bias, targets, chunk_rows)


class LogProbHead(nn.Linear):
    """A causal LM's output head that returns target log-probabilities while scoring.

    It shares the weight and bias Parameters of the `nn.Linear` it replaces (nothing is
    copied or allocated). Outside `scoring` it is that linear layer.

    Args:
        linear: The head it replaces.
        chunk_rows: Rows per chunk; by default from the vocabulary size.
    """

    def __init__(self, linear: nn.Linear, chunk_rows: int | None = None):
        super().__init__(linear.in_features, linear.out_features, bias=False, device="meta")
        self.weight = linear.weight
        self.bias = linear.bias
        self.chunk_rows = chunk_rows or chunk_rows_for(linear.out_features)
        self.targets: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits, or (while scoring) each position's log-probability of its target.

        Raises:
            ValueError: the hidden states do not cover the positions of the targets (e.g.
                the model was asked to keep only some positions' logits).
        """
        if self.targets is None:
            return super().forward(hidden)
        if hidden.shape[:-1] != self.targets.shape:
            raise ValueError(
                f"the head got hidden states of shape {tuple(hidden.shape)} for targets of "
                f"shape {tuple(self.targets.shape)}; score every position (no logits_to_keep)"
            )
        flat, targets = hidden.reshape(-1, hidden.shape[-1]), self.targets.reshape(-1)
        logps = chunked_logps(flat, self.weight, self.bias, targets, self.chunk_rows)
        return logps.view(self.targets.shape)


def install_logprob_head(model: Any) -> bool:
    """Replaces a causal LM's plain `nn.Linear` head (after any PEFT wrapping) by a
    `LogProbHead` sharing its weight.

    Args:
        model: A Hugging Face causal LM, or a `PeftModel` around one.

    Returns:
        Whether the model now has a `LogProbHead`; False (nothing changed) when its head is
        adapted, a trained copy, quantized or otherwise not a plain `nn.Linear`, so the
        loss takes the plain path.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if isinstance(head, LogProbHead):
        return True
    if type(head) is not nn.Linear:
        return False
    base.set_output_embeddings(LogProbHead(head))
    return True


@contextlib.contextmanager
def scoring(heads: Sequence[LogProbHead], targets: torch.Tensor) -> Iterator[None]:
    """Hands `targets` (B, T) to the heads for the forward calls inside the block."""
    for head in heads:
        head.targets = targets
    try:
        yield
    finally:
        for head in heads:
            head.targets = None


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Each position's next-token target: labels moved left by one, the last ignored."""
    ignored = labels.new_full((labels.shape[0], 1), IGNORE_INDEX)
    return torch.cat([labels[:, 1:], ignored], dim=1)


def plain_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The plain path: target log-probabilities from full logits (fp32), 0 where ignored."""
    valid = targets != IGNORE_INDEX
    logps = torch.log_softmax(logits.float(), dim=-1)
    picked = logps.gather(-1, targets.masked_fill(~valid, 0).unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(~valid, 0.0)


def next_token_logps(
    module: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor
) -> torch.Tensor:
    """Runs the model and returns each position's log-probability of the next label.

    Through a `LogProbHead` when the model has one (see `install_logprob_head`), else from
    full logits.

    Args:
        module: The model, possibly wrapped (DDP, FSDP, DeepSpeed, PEFT).
        inputs: Keyword arguments of its forward call (no labels).
        labels: (B, T) token ids, `IGNORE_INDEX` where no loss is taken.

    Returns:
        (B, T) fp32: position t scores `labels[:, t + 1]`; 0 at ignored targets and at the
        last position. Summed, it is minus the summed next-token cross-entropy.
    """
    targets = shift_labels(labels)
    heads = [m for m in module.modules() if isinstance(m, LogProbHead)]
    if not heads:
        return plain_logps(module(**inputs).logits, targets)
    with scoring(heads, targets):
        return module(**inputs).logits
