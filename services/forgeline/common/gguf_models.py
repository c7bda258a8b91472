"""GGUF files as Hugging Face models: what a file declares, and its conversion into a folder.

transformers reads a GGUF with `gguf_file=` and dequantizes it; `convert()` saves the result
as a plain float32 folder (safetensors, config, tokenizer) that every part of the suite can
load. The bundled model and imported GGUF files both go through it.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from forgeline.client import exceptions

log = logging.getLogger(__name__)

# Written last into a converted folder: a folder without it is incomplete.
COMPLETE_MARKER = ".forgeline-complete"


@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF file says about itself (`general.*` keys)."""

    architecture: str
    license: str
    name: str


def _field(reader, key: str) -> str:
    field = reader.fields.get(key)
    if field is None:
        return ""
    value = field.contents()
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def read_info(path: Path) -> GgufInfo:
    """Reads the `general.*` keys of a GGUF file with the `gguf` package's reader.

    Raises:
        InvalidArgument: the file is not a readable GGUF file.
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise exceptions.InvalidArgument("source", f"{path} is not a GGUF file: {exc}") from None
    return GgufInfo(
        architecture=_field(reader, "general.architecture"),
        license=_field(reader, "general.license"),
        name=_field(reader, "general.name"),
    )


def check_readable(path: Path, info: GgufInfo) -> None:
    """Checks that transformers can read the file's architecture and metadata (no tensors).

    Raises:
        InvalidArgument: transformers cannot read it; names the file and its architecture.
    """
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as exc:
        if "not supported" in str(exc):
            raise exceptions.InvalidArgument(
                "source",
                f"{path}: transformers cannot read GGUF architecture {info.architecture!r}",
            ) from None
        raise exceptions.InvalidArgument(
            "source", f"{path} (architecture {info.architecture!r}): transformers: {exc}"
        ) from None
    except (KeyError, IndexError, TypeError) as exc:  # a key transformers needs is missing
        raise exceptions.InvalidArgument(
            "source",
            f"{path} (architecture {info.architecture!r}): transformers cannot read it: {exc!r}",
        ) from None


def is_converted(dest: Path) -> bool:
    """Whether `dest` holds a complete conversion."""
    return (dest / COMPLETE_MARKER).exists()


def convert(source: Path, dest: Path, *, force: bool = False) -> Path:
    """Converts a GGUF file into a Hugging Face folder at `dest`, once; returns `dest`.

    transformers dequantizes the tensors; the GGUF quantizer marker is dropped so the folder
    saves and loads as a plain float32 model. The folder appears atomically, complete.

    Args:
        source: The GGUF file.
        dest: The folder to create.
        force: Convert again even if `dest` holds a complete conversion.

    Raises:
        InvalidArgument: transformers could not convert the file.
    """
    if is_converted(dest) and not force:
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into %s", source, dest)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
    except (ValueError, NotImplementedError, KeyError) as exc:
        raise exceptions.InvalidArgument(
            "source", f"{source}: transformers could not convert it: {exc}"
        ) from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / COMPLETE_MARKER).write_text(source.name)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    return dest
