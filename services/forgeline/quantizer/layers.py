"""The linear layers a weight quantizer rewrites: their input widths, the group size, their bytes.

GPTQ and AWQ quantize every linear layer of the decoder blocks (never the embeddings or the
output head) in groups of `group_size` input columns, so the group size must divide every
such layer's input width; `quantized_linear_widths` reads those widths from config.json
alone and `choose_group_size` settles the group size against them. Byte accounting reads
safetensors headers only: what the quantized layers take in a folder (`layer_bytes`) against
what they took in float32 (`float32_layer_bytes`).
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from forgeline.client import exceptions
from forgeline.trainer.model_info import read_model_info
from forgeline.trainer.targets import DEFAULT_TARGETS

log = logging.getLogger(__name__)

# Group sizes tried, largest first, when the caller leaves the choice to us (0). They are
# also the only ones vLLM's GPTQ/AWQ kernels take, besides per channel (-1).
AUTO_GROUP_SIZES = (128, 64, 32)
PER_CHANNEL = -1
FIELD = "spec.group_size"

# Block layout shared by the Llama family: module -> which width feeds it.
_LLAMA_LAYOUT = {
    "self_attn.q_proj": "hidden",
    "self_attn.k_proj": "hidden",
    "self_attn.v_proj": "hidden",
    "self_attn.o_proj": "attention",
    "mlp.gate_proj": "hidden",
    "mlp.up_proj": "hidden",
    "mlp.down_proj": "intermediate",
}
_LLAMA_TARGETS = DEFAULT_TARGETS["llama"]
_MOE_TYPES = frozenset({"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2"})


def quantized_linear_widths(model_dir: Path) -> dict[str, int]:
    """Every linear layer GPTQ/AWQ quantize -> its input width, without loading weights.

    Dense models of the Llama layout (Llama, Mistral, Qwen2/3, Gemma, ...) are read from
    config.json (hidden_size, intermediate_size, attention heads and head_dim); any other
    architecture from the 2-D block weights in its safetensors headers.

    Args:
        model_dir: A Hugging Face model folder.

    Returns:
        Module name (e.g. ``model.layers.0.mlp.down_proj``) -> input features, in block order.

    Raises:
        FailedPrecondition: the folder has no config.json, or the layers cannot be told from
            the config and there are no safetensors weights to read them from.
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise exceptions.FailedPrecondition(f"{Path(model_dir).name} has no config.json")
    config = json.loads(path.read_text(encoding="utf-8"))
    text = config.get("text_config", config)
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    if DEFAULT_TARGETS.get(model_type) == _LLAMA_TARGETS and model_type not in _MOE_TYPES:
        widths = _llama_widths(text)
        if widths:
            return widths
    info = read_model_info(model_dir)
    return {module: cols for module, _, cols in info.linear_shapes}


def _llama_widths(config: Mapping) -> dict[str, int]:
    """Widths of a Llama-layout model from its config; empty when a number is missing."""
    hidden = int(config.get("hidden_size") or 0)
    heads = int(config.get("num_attention_heads") or 0)
    layers = int(config.get("num_hidden_layers") or 0)
    intermediate = int(config.get("intermediate_size") or 0)
    if not (hidden and heads and layers and intermediate):
        return {}
    head_dim = int(config.get("head_dim") or hidden // heads)
    feeds = {"hidden": hidden, "attention": heads * head_dim, "intermediate": intermediate}
    return {
        f"model.layers.{i}.{module}": feeds[feed]
        for i in range(layers)
        for module, feed in _LLAMA_LAYOUT.items()
    }


def choose_group_size(widths: Mapping[str, int], requested: int) -> int:
    """Settles the quantization group size against the quantized layers' input widths.

    Args:
        widths: Module name -> input width (`quantized_linear_widths`).
        requested: 0 to choose the largest of 128, 64, 32 that divides every width (per
            channel when none does); -1 for per-channel scales; else one of 128, 64, 32,
            which must divide every width.

    Returns:
        The group size (-1 for per channel).

    Raises:
        InvalidArgument: `spec.group_size` is not a size vLLM serves, or does not divide some
            layers' input width; the description names those widths and layers.
    """
    if requested == PER_CHANNEL:
        return PER_CHANNEL
    if requested == 0:
        for size in AUTO_GROUP_SIZES:
            if not _not_divided(widths, size):
                return size
        log.info(
            "no group size of %s divides every layer width; using per channel", AUTO_GROUP_SIZES
        )
        return PER_CHANNEL
    allowed = ", ".join(str(s) for s in AUTO_GROUP_SIZES)
    if requested not in AUTO_GROUP_SIZES:
        raise exceptions.InvalidArgument(
            FIELD,
            f"group size {requested} is not served by vLLM's GPTQ/AWQ kernels; use {allowed}, "
            "-1 (per channel) or 0 (the largest that fits)",
        )
    bad = _not_divided(widths, requested)
    if bad:
        fitting = [str(s) for s in AUTO_GROUP_SIZES if not _not_divided(widths, s)]
        hint = f"use {' or '.join(fitting)}" if fitting else "use -1 (per channel)"
        raise exceptions.InvalidArgument(
            FIELD,
            f"group size {requested} does not divide the input width of every quantized "
            f"layer: {_describe_widths(bad)}; {hint}, or 0 to choose",
        )
    return requested


def _not_divided(widths: Mapping[str, int], size: int) -> dict[int, list[str]]:
    """Widths that `size` does not divide -> the layers that have them."""
    bad: dict[int, list[str]] = {}
    for name, width in widths.items():
        if width % size:
            bad.setdefault(width, []).append(name)
    return bad


def _describe_widths(bad: Mapping[int, list[str]]) -> str:
    """`576 (model.layers.0.self_attn.q_proj and 149 more), ...`."""
    parts = []
    for width, names in sorted(bad.items()):
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        parts.append(f"{width} ({names[0]}{more})")
    return ", ".join(parts)


def folder_bytes(path: Path) -> int:
    """Bytes of every file under `path` (or of `path` itself when it is a file)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def tensor_bytes(model_dir: Path) -> dict[str, int]:
    """Tensor name -> bytes on disk, from the safetensors headers of a model folder."""
    return {
        name: meta["data_offsets"][1] - meta["data_offsets"][0]
        for name, meta in _headers(model_dir)
    }


def layer_bytes(model_dir: Path, layers: Iterable[str]) -> int:
    """Bytes the tensors of `layers` take in a folder: every tensor named `<layer>.<...>`.

    That is the weight, bias and whatever a quantized format keeps beside them (`qweight`,
    `qzeros`, `scales`, `g_idx`; bitsandbytes' `absmax`, `quant_map`, `SCB`, ...).

    Raises:
        FailedPrecondition: a layer has no tensor in the folder.
    """
    prefixes = {f"{layer}." for layer in layers}
    sizes = tensor_bytes(model_dir)
    found: dict[str, int] = dict.fromkeys(prefixes, 0)
    for name, size in sizes.items():
        prefix = name[: name.rfind(".") + 1]
        while prefix and prefix not in found:
            # Nested names (`...q_proj.weight.absmax`): walk up to the layer's own prefix.
            prefix = prefix[: prefix[:-1].rfind(".") + 1]
        if prefix:
            found[prefix] += size
    missing = sorted(p[:-1] for p, size in found.items() if size == 0)
    if missing:
        raise exceptions.FailedPrecondition(
            f"{Path(model_dir).name} has no tensors for {len(missing)} quantized layers, "
            f"e.g. {missing[0]}"
        )
    return sum(found.values())


def float32_layer_bytes(model_dir: Path, layers: Iterable[str]) -> int:
    """Bytes `layers` (weights and biases) take in float32, from a folder's headers.

    Raises:
        FailedPrecondition: the folder has no safetensors weights.
    """
    wanted = {f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")}
    return sum(4 * math.prod(meta["shape"]) for name, meta in _headers(model_dir) if name in wanted)


def _headers(model_dir: Path) -> Iterator[tuple[str, dict]]:
    """(tensor name, header entry) of every tensor in a folder's safetensors files.

    Raises:
        FailedPrecondition: the folder has no safetensors file.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise exceptions.FailedPrecondition(f"{Path(model_dir).name} has no .safetensors weights")
    for file in files:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        yield from ((name, meta) for name, meta in header.items() if name != "__metadata__")
