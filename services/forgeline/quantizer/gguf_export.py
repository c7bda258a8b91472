"""GGUF export: one Hugging Face folder (config, safetensors, tokenizer) as one `.gguf` file.

The file is what llama.cpp's `convert_hf_to_gguf.py` writes for a Llama-layout model:
`general.*` and `llama.*` hyperparameters, the tokenizer as `tokenizer.ggml.*` metadata
(`gguf_vocab`), and the tensors renamed, permuted for rotary embeddings and typed
(`gguf_tensors`). Only the Llama layout is written (Llama, and Mistral, which llama.cpp
converts as the same architecture); `gguf_unsupported` says why any other model is refused,
from its config alone, so the check can run before a job starts.

Weights are read from safetensors one tensor at a time and streamed into a temporary file
beside the target, which is renamed into place only when complete.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from forgeline.client import exceptions
from forgeline.quantizer.gguf_tensors import (
    TensorSource,
    open_weights,
    plan_tensors,
    weight_files,
)
from forgeline.quantizer.gguf_vocab import read_vocab

log = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
ROPE_TYPES = ("default", "linear", "llama3")
_REQUIRED_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
)
_ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]


class GgufType(enum.StrEnum):
    """Tensor type of the 2-D weights of a GGUF export (norms and 1-D tensors stay F32)."""

    F32 = "f32"
    F16 = "f16"
    Q8_0 = "q8_0"

    @property
    def file_type(self) -> gguf.LlamaFileType:
        """llama.cpp's `general.file_type` for this choice."""
        return {
            GgufType.F32: gguf.LlamaFileType.ALL_F32,
            GgufType.F16: gguf.LlamaFileType.MOSTLY_F16,
            GgufType.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
        }[self]


@dataclass(frozen=True)
class GgufExport:
    """What an export wrote.

    Attributes:
        path: The `.gguf` file.
        size_bytes: Its size.
        tensor_count: Tensors in it.
        gguf_type: Type of its 2-D weights.
    """

    path: Path
    size_bytes: int
    tensor_count: int
    gguf_type: GgufType


def gguf_unsupported(model_dir: Path) -> str | None:
    """Why this model cannot be exported to GGUF, or None when it can. Reads config.json only.

    Args:
        model_dir: A Hugging Face model folder.
    """
    try:
        _supported_config(model_dir)
    except exceptions.FailedPrecondition as exc:
        return exc.message
    return None


def export_gguf(
    model_dir: Path,
    out_file: Path,
    gguf_type: GgufType,
    progress: Callable[[int, int], None] | None = None,
    *,
    name: str | None = None,
) -> GgufExport:
    """Writes `model_dir` as one GGUF file, atomically (temporary file, then rename).

    Everything that can be wrong with the model (architecture, tokenizer, tensor names) is
    found before the first byte is written; on any failure, including an exception raised by
    `progress` to cancel, no file is left behind.

    Args:
        model_dir: A Hugging Face folder: config.json, safetensors weights, tokenizer.json.
        out_file: The `.gguf` file to write; its folder is created if needed.
        gguf_type: Type of the 2-D weights.
        progress: Called as `progress(done_tensors, total_tensors)` after each tensor.
        name: `general.name` of the file; defaults to the folder's name.

    Returns:
        The file's path, size, tensor count and type.

    Raises:
        FailedPrecondition: the architecture, RoPE scaling, tokenizer or weights cannot be
            written as GGUF; the message says which and why.
    """
    gguf_type = GgufType(gguf_type)
    config = _supported_config(model_dir)
    started = time.monotonic()
    vocab = read_vocab(model_dir, config["vocab_size"])
    rope_type, rope = _rope_parameters(config)
    extra = []
    if rope_type == "llama3":
        extra.append(("rope_freqs.weight", llama3_rope_factors(config, rope)))
    files = weight_files(model_dir)
    with open_weights(files) as handles:
        plan = plan_tensors(handles, config, gguf_type.value, extra)
        parameters = sum(math.prod(source.shape) for source in plan if source.data is None)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        # A unique name per call: two exports to one target never share a temporary file.
        tmp = out_file.with_name(f".{out_file.name}.{uuid.uuid4().hex[:12]}.tmp")
        writer = gguf.GGUFWriter(tmp, _ARCH)
        try:
            _add_hyperparameters(writer, config, gguf_type, name or model_dir.name, parameters)
            vocab.add_to(writer)
            _write_tensors(writer, plan, handles, progress)
            writer.close()
            os.replace(tmp, out_file)
        except BaseException:
            writer.close()
            tmp.unlink(missing_ok=True)
            raise
    size = out_file.stat().st_size
    log.info(
        "exported %s as %s (%s, %d tensors, %d bytes) in %.1f s",
        model_dir.name,
        out_file.name,
        gguf_type.value,
        len(plan),
        size,
        time.monotonic() - started,
    )
    return GgufExport(out_file, size, len(plan), gguf_type)


def _write_tensors(
    writer: gguf.GGUFWriter,
    plan: list[TensorSource],
    handles: dict[Path, Any],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Writes header, metadata and tensor table, then streams the tensors one at a time."""
    for source in plan:
        source.add_info(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for done, source in enumerate(plan, start=1):
        writer.write_tensor_data(source.load(handles))
        if progress is not None:
            progress(done, len(plan))
    writer.flush()
    # Durable before the rename makes it visible.
    os.fsync(writer.fout[0].fileno())


def llama3_rope_factors(config: dict[str, Any], rope: dict[str, Any]) -> np.ndarray:
    """Per-frequency divisors of Llama 3.1-style RoPE scaling (llama.cpp's `rope_freqs`).

    llama.cpp has no `llama3` scaling type; it reads these factors from a tensor instead.
    """
    dim = _head_dim(config)
    theta = rope.get("rope_theta", 10000.0)
    freqs = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    factor = rope.get("factor", 8.0)
    low = rope.get("low_freq_factor", 1.0)
    high = rope.get("high_freq_factor", 4.0)
    original = rope.get(
        "original_max_position_embeddings", config.get("original_max_position_embeddings", 8192)
    )
    wavelen = 2 * math.pi / freqs
    smooth = (original / wavelen - low) / (high - low)
    factors = np.where(
        wavelen < original / high,
        1.0,
        np.where(wavelen > original / low, factor, 1.0 / ((1 - smooth) / factor + smooth)),
    )
    return factors.astype(np.float32)


def _supported_config(model_dir: Path) -> dict[str, Any]:
    """The model's config.json, when its model can be exported.

    Raises:
        FailedPrecondition: it cannot; the message says why.
    """
    path = model_dir / "config.json"

    def refuse(reason: str) -> exceptions.FailedPrecondition:
        return exceptions.FailedPrecondition(reason, subject="config.json", type="GGUF_EXPORT")

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise refuse(f"{model_dir.name} has no config.json; is it a model?") from None
    except (OSError, ValueError) as exc:
        raise refuse(f"config.json of {model_dir.name} cannot be read: {exc}") from None
    supported = ", ".join(SUPPORTED_ARCHITECTURES)
    architecture = (config.get("architectures") or [None])[0]
    if architecture is None:
        raise refuse(
            f"config.json of {model_dir.name} names no architecture; supported: {supported}"
        )
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise refuse(
            f"architecture {architecture} is not supported for GGUF export yet; "
            f"supported: {supported}"
        )
    if quantization := config.get("quantization_config"):
        method = quantization.get("quant_method", "unknown method")
        raise refuse(
            f"{model_dir.name} is already quantized ({method}); export its full-precision version"
        )
    missing = [key for key in _REQUIRED_KEYS if not config.get(key)]
    if missing:
        raise refuse(f"config.json of {model_dir.name} lacks {', '.join(missing)}")
    rope_type, rope = _rope_parameters(config)
    if rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)) != 1.0:
        raise refuse("partial rotary embeddings are not supported for GGUF export yet")
    if rope_type not in ROPE_TYPES:
        raise refuse(
            f"RoPE scaling {rope_type!r} is not supported for GGUF export yet; "
            f"supported: {', '.join(ROPE_TYPES)}"
        )
    return config


def _rope_parameters(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """RoPE type and parameters, from `rope_parameters` or the older `rope_scaling` and
    top-level `rope_theta`."""
    rope = dict(config.get("rope_scaling") or {})
    rope.update(config.get("rope_parameters") or {})
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    return rope.get("rope_type", rope.get("type")) or "default", rope


def _head_dim(config: dict[str, Any]) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def _add_hyperparameters(
    writer: gguf.GGUFWriter,
    config: dict[str, Any],
    gguf_type: GgufType,
    name: str,
    parameters: int,
) -> None:
    """Writes `general.*` and `llama.*`, the keys llama.cpp and transformers read back."""
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_size_label(gguf.size_label(parameters, parameters, 0, 0))
    writer.add_file_type(gguf_type.file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_block_count(config["num_hidden_layers"])
    if context := config.get("max_position_embeddings"):
        writer.add_context_length(context)
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    n_head = config["num_attention_heads"]
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_vocab_size(config["vocab_size"])
    head_dim = _head_dim(config)
    writer.add_rope_dimension_count(head_dim)
    if config.get("head_dim"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope_type, rope = _rope_parameters(config)
    writer.add_rope_freq_base(rope["rope_theta"])
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    window = config.get("sliding_window")
    if window and window < config.get("max_position_embeddings", 0):
        # llama.cpp's llama architecture has no sliding window, and converts such models
        # anyway: outputs match within the window and differ beyond it.
        log.warning("sliding window of %d tokens is not written to the GGUF file", window)
