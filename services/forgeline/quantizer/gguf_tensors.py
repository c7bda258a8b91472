"""The tensors of a Llama-layout safetensors checkpoint, renamed, typed and converted for GGUF.

`plan_tensors` reads only the safetensors headers: it maps every Hugging Face name to its
GGUF name, picks each tensor's GGUF type and fails on anything it cannot place, so a bad
checkpoint is refused before a byte is written. `TensorSource.load` then reads one tensor at
a time, so an export holds a single tensor in memory, not the model.

The conversions follow llama.cpp's `convert_hf_to_gguf.py`: q and k projections are permuted
so that rotary embeddings pair adjacent dimensions (llama.cpp's layout) instead of the two
halves of each head (Hugging Face's); norms and other 1-D tensors stay F32; Q8_0 is used for
2-D weights whose rows split into whole 32-weight blocks, F16 for the rest; a tied `lm_head`
is not written (readers reuse `token_embd`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from forgeline.client import exceptions

F32 = gguf.GGMLQuantizationType.F32
F16 = gguf.GGMLQuantizationType.F16
Q8_0 = gguf.GGMLQuantizationType.Q8_0

# Buffers some checkpoints carry that hold nothing a GGUF reader needs.
_SKIPPED_SUFFIXES = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")
_BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class TensorSource:
    """One tensor of the export: where it comes from and how it is written.

    Attributes:
        name: GGUF tensor name, e.g. ``blk.0.attn_q.weight``.
        shape: Shape in numpy (row-major) order.
        qtype: GGUF type it is written in.
        key: Safetensors name it is read from; empty for generated tensors.
        file: Safetensors file holding `key`.
        permute_heads: Head count to permute rows by (q and k projections), else None.
        data: The values of a generated tensor (`rope_freqs`), else None.
    """

    name: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    key: str = ""
    file: Path | None = None
    permute_heads: int | None = None
    data: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in the file."""
        block, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.shape[:-1]) * self.shape[-1] // block * type_size

    def add_info(self, writer: gguf.GGUFWriter) -> None:
        """Declares the tensor (name, shape, type, size) to the writer."""
        if self.qtype in (F32, F16):
            dtype = np.float32 if self.qtype == F32 else np.float16
            writer.add_tensor_info(self.name, self.shape, np.dtype(dtype), self.nbytes)
        else:
            byte_shape = gguf.quant_shape_to_byte_shape(self.shape, self.qtype)
            writer.add_tensor_info(
                self.name, byte_shape, np.dtype(np.uint8), self.nbytes, raw_dtype=self.qtype
            )

    def load(self, files: dict[Path, Any]) -> np.ndarray:
        """Reads, permutes and converts the tensor, ready for `GGUFWriter.write_tensor_data`.

        Args:
            files: Open safetensors handles by file (see `open_weights`).
        """
        if self.data is not None:
            values = self.data.astype(np.float32)
        else:
            import torch

            values = files[self.file].get_tensor(self.key).to(torch.float32).numpy()
        if self.permute_heads is not None:
            values = permute_rotary(values, self.permute_heads)
        return gguf.quants.quantize(values, self.qtype)


def permute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorders q/k projection rows from Hugging Face's rotary layout to llama.cpp's.

    Within each head, Hugging Face rotates dimension i with i + head_dim/2; llama.cpp rotates
    2i with 2i+1. Readers (transformers' GGUF loader among them) apply the inverse.
    """
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def choose_type(name: str, shape: tuple[int, ...], file_type: str) -> gguf.GGMLQuantizationType:
    """GGUF type of one tensor in a file of `file_type` ("f32", "f16" or "q8_0").

    Norms, biases and other 1-D tensors stay F32, as llama.cpp keeps them; a matrix whose rows
    are not whole Q8_0 blocks falls back to F16.
    """
    if file_type == "f32" or len(shape) <= 1 or name.endswith("_norm.weight"):
        return F32
    if not name.endswith(".weight"):
        return F32
    block, _ = gguf.GGML_QUANT_SIZES[Q8_0]
    if file_type == "q8_0" and shape[-1] % block == 0:
        return Q8_0
    return F16


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a model folder (one file or the shards of an index).

    Raises:
        FailedPrecondition: the folder has no safetensors weights.
    """
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise exceptions.FailedPrecondition(
        f"{model_dir.name} has no model.safetensors (or index); GGUF export reads safetensors only",
        subject="model.safetensors",
    )


@contextmanager
def open_weights(files: list[Path]) -> Iterator[dict[Path, Any]]:
    """Opens every safetensors file lazily (headers only); closes them on exit."""
    from safetensors import safe_open

    with ExitStack() as stack:
        yield {path: stack.enter_context(safe_open(path, framework="pt")) for path in files}


def plan_tensors(
    handles: dict[Path, Any],
    hparams: dict[str, Any],
    file_type: str,
    extra: Sequence[tuple[str, np.ndarray]] = (),
) -> list[TensorSource]:
    """Every tensor the export writes, in file order, from the safetensors headers.

    Args:
        handles: Open safetensors files (see `open_weights`).
        hparams: The model's config.json.
        file_type: "f32", "f16" or "q8_0".
        extra: Generated tensors (GGUF name, values), written first.

    Raises:
        FailedPrecondition: a tensor has no GGUF name, the q/k rows do not split into heads,
            or an untied model has no `lm_head`.
    """
    n_layers = hparams["num_hidden_layers"]
    n_head = hparams["num_attention_heads"]
    n_head_kv = hparams.get("num_key_value_heads") or n_head
    tied = bool(hparams.get("tie_word_embeddings", False))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)

    planned = [TensorSource(name, data.shape, F32, data=data) for name, data in extra]
    unmapped: list[str] = []
    for path, handle in handles.items():
        for key in handle.keys():  # noqa: SIM118 (safetensors handles are not iterable)
            if key.endswith(_SKIPPED_SUFFIXES) or (tied and key == "lm_head.weight"):
                continue
            name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:
                unmapped.append(key)
                continue
            shape = tuple(handle.get_slice(key).get_shape())
            heads = {".attn_q.": n_head, ".attn_k.": n_head_kv}
            permute = next((h for part, h in heads.items() if part in name), None)
            if permute is not None and shape[0] % (2 * permute):
                raise exceptions.FailedPrecondition(
                    f"{key} has {shape[0]} rows, which do not split into {permute} rotary heads"
                )
            planned.append(
                TensorSource(name, shape, choose_type(name, shape, file_type), key, path, permute)
            )
    if unmapped:
        shown = ", ".join(unmapped[:5]) + (
            f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else ""
        )
        raise exceptions.FailedPrecondition(
            f"no GGUF name for tensor(s) {shown}; is this a plain Llama-layout checkpoint?"
        )
    written = {source.name for source in planned}
    if not tied and "output.weight" not in written:
        raise exceptions.FailedPrecondition(
            "config.json says tie_word_embeddings is false but the weights have no lm_head.weight"
        )
    return sorted(planned, key=_file_order)


def _file_order(source: TensorSource) -> tuple[int, int, str]:
    """Generated and embedding tensors first, then blocks by number, then the rest."""
    if match := _BLOCK.match(source.name):
        return 1, int(match.group(1)), source.name
    if source.data is not None or source.name.startswith("token_embd"):
        return 0, 0, source.name
    return 2, 0, source.name
