"""GPTQ and AWQ checkpoints unpacked into plain float32 models, to score them on any machine.

transformers runs GPTQ/AWQ folders only through optional kernel packages; on CPU here its
auto-round path unpacks every weight on every call for GPTQ and finds no working kernel for
AWQ. Both formats are simple enough to unpack once: integers packed into int32 words, one
scale and one zero point per group of input columns. `load_unpacked` builds the model from
its config and fills every quantized layer with exactly the weights the checkpoint encodes,
`scale * (q - zero)`, so the quantized model is scored at the speed of an unquantized one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from forgeline.client import exceptions

log = logging.getLogger(__name__)

# AutoAWQ packs the 8 nibbles of a word in the column order 0 2 4 6 1 3 5 7; reading the
# nibbles in this order gives the columns back in their natural order.
_AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)


def _unpack_words(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Splits each int32 of `words` into its `32 // bits` values (lowest bits first) along `dim`."""
    shifts = torch.arange(0, 32, bits, dtype=torch.int32, device=words.device)
    mask = (1 << bits) - 1
    if dim == 0:
        values = (words[:, None, :] >> shifts[None, :, None]) & mask
        return values.reshape(-1, words.shape[1])
    values = (words[:, :, None] >> shifts[None, None, :]) & mask
    return values.reshape(words.shape[0], -1)


def unpack_gptq(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    g_idx: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> torch.Tensor:
    """The (out, in) float32 weight of one GPTQ layer.

    `qweight` packs the input rows (in / (32 / bits), out); `qzeros` packs the output
    columns and holds each zero point minus one, as AutoGPTQ writes it; `g_idx` gives each
    input row's group (row // group_size when absent).

    Raises:
        FailedPrecondition: `bits` does not pack evenly into 32 (3 bits).
    """
    _check_bits(bits, (2, 4, 8))
    weight = _unpack_words(qweight, bits, dim=0)
    zeros = _unpack_words(qzeros, bits, dim=1)[:, : scales.shape[1]] + 1
    if g_idx is None:
        rows = weight.shape[0]
        g_idx = torch.arange(rows, device=weight.device) // (group_size if group_size > 0 else rows)
    g_idx = g_idx.long()
    unpacked = (weight - zeros[g_idx]).float() * scales.float()[g_idx]
    return unpacked.T.contiguous()


def unpack_awq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int
) -> torch.Tensor:
    """The (out, in) float32 weight of one AWQ (GEMM layout) layer.

    `qweight` (in, out / 8) and `qzeros` (groups, out / 8) pack output columns in AutoAWQ's
    interleaved order; zero points are stored as they are.

    Raises:
        FailedPrecondition: `bits` is not 4, the only width of the AWQ GEMM layout.
    """
    _check_bits(bits, (4,))
    weight = _awq_columns(_unpack_words(qweight, bits, dim=1))
    zeros = _awq_columns(_unpack_words(qzeros, bits, dim=1))
    group = group_size if group_size > 0 else weight.shape[0]
    zeros = zeros.repeat_interleave(group, dim=0)
    scales = scales.float().repeat_interleave(group, dim=0)
    return ((weight - zeros).float() * scales).T.contiguous()


def _awq_columns(values: torch.Tensor) -> torch.Tensor:
    order = torch.arange(values.shape[1], device=values.device).view(-1, len(_AWQ_REVERSE_ORDER))
    return values[:, order[:, list(_AWQ_REVERSE_ORDER)].reshape(-1)]


def _check_bits(bits: int, allowed: tuple[int, ...]) -> None:
    if bits not in allowed:
        raise exceptions.FailedPrecondition(
            f"cannot unpack {bits}-bit weights of this format; it packs {allowed} bits"
        )


def unpacked_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a GPTQ/AWQ folder, quantized layers unpacked to float32 `<layer>.weight`.

    Raises:
        FailedPrecondition: the folder is not GPTQ or AWQ, or holds bits it cannot unpack.
    """
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    quant = config.get("quantization_config") or {}
    method = str(quant.get("quant_method", "")).lower()
    if method not in ("gptq", "awq"):
        raise exceptions.FailedPrecondition(f"{model_dir.name} is not a GPTQ or AWQ checkpoint")
    bits = int(quant.get("bits") or quant.get("w_bit") or 0)
    group_size = int(quant.get("group_size") or quant.get("q_group_size") or -1)
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(file))
    state: dict[str, torch.Tensor] = {}
    layers = sorted(name.removesuffix(".qweight") for name in tensors if name.endswith(".qweight"))
    for layer in layers:
        qweight, qzeros, scales = (
            tensors.pop(f"{layer}.{k}") for k in ("qweight", "qzeros", "scales")
        )
        g_idx = tensors.pop(f"{layer}.g_idx", None)
        if method == "gptq":
            state[f"{layer}.weight"] = unpack_gptq(qweight, qzeros, scales, g_idx, bits, group_size)
        else:
            state[f"{layer}.weight"] = unpack_awq(qweight, qzeros, scales, bits, group_size)
    state.update((name, tensor.float()) for name, tensor in tensors.items())
    log.info("unpacked %d %s layers of %s", len(layers), method, model_dir.name)
    return state


def load_unpacked(model_dir: Path, device: str = "cpu") -> Any:
    """A GPTQ/AWQ folder as a plain float32 causal LM holding the quantized weights.

    Raises:
        FailedPrecondition: the folder is not GPTQ or AWQ, or its tensors do not fit its
            architecture.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    state = unpacked_state_dict(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(state, strict=False)
    tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - {
        name for name, p in model.named_parameters()
    }
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise exceptions.FailedPrecondition(
            f"{Path(model_dir).name} does not fit its architecture: missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return model.to(device).eval()
