"""Merging a PEFT adapter (LoRA, DoRA, or one trained with QLoRA) into its base model.

The base is always loaded unquantized in float32 for the merge, whatever quantization the
adapter was trained on (a QLoRA adapter holds plain LoRA matrices; only its training base was
4- or 8-bit). The merged model is cast back to the base's own dtype and saved as an ordinary
Hugging Face folder: safetensors, config, generation config and tokenizer. Tied input and
output embeddings stay one tensor, so the folder holds no separate `lm_head`.

The folder is written beside the target under a temporary name and renamed into place when
complete, so a failed merge leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.client import exceptions

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Files that make up a tokenizer; whichever of them a folder has are copied as they are.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
# PEFT methods that add weights to existing layers, so that merging folds them in.
MERGEABLE_TYPES = ("LORA", "LOHA", "LOKR", "IA3", "ADALORA", "OFT", "BOFT", "VERA")
_STEPS = 4  # base loaded, adapter loaded, merged, saved


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote.

    Attributes:
        path: The merged model folder.
        size_bytes: Bytes of every file in it.
        weight_bytes: Bytes of its safetensors files.
        parameters: Parameters of the merged model (a tied embedding counted once).
        dtype: Its dtype, the base's (e.g. ``"float32"``).
        tied_embeddings: Whether the input and output embeddings are one tensor.
        adapter_type: ``"lora"``, ``"dora"`` or the PEFT type in lower case.
        tokenizer_from: ``"adapter"`` or ``"base"``: where the tokenizer was copied from.
    """

    path: Path
    size_bytes: int
    weight_bytes: int
    parameters: int
    dtype: str
    tied_embeddings: bool
    adapter_type: str
    tokenizer_from: str


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """Reads and checks an adapter folder's `adapter_config.json`.

    Raises:
        FailedPrecondition: the folder is not a PEFT adapter, or one that cannot be merged.
    """
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise exceptions.FailedPrecondition(
            f"{Path(adapter_dir).name} has no {ADAPTER_CONFIG}; is it a PEFT adapter?"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise exceptions.FailedPrecondition(f"{ADAPTER_CONFIG} is not valid JSON: {exc}") from None
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type not in MERGEABLE_TYPES:
        raise exceptions.FailedPrecondition(
            f"a {peft_type or 'untyped'} adapter cannot be merged into its base; "
            f"merging needs one of {', '.join(MERGEABLE_TYPES)}"
        )
    if not any((Path(adapter_dir) / name).is_file() for name in ADAPTER_WEIGHTS):
        raise exceptions.FailedPrecondition(
            f"{Path(adapter_dir).name} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})"
        )
    return config


def adapter_type(config: dict[str, Any]) -> str:
    """``"dora"`` for a LoRA adapter with weight decomposition, else the PEFT type, lowered."""
    peft_type = str(config.get("peft_type", "")).lower()
    return "dora" if peft_type == "lora" and config.get("use_dora") else peft_type


def config_dtype(model_dir: Path) -> str:
    """The dtype a model folder's config.json declares (``float32`` when it declares none)."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config", {})
    dtype = config.get("dtype") or config.get("torch_dtype") or text.get("dtype") or "float32"
    return str(dtype).removeprefix("torch.")


def merge_adapter(
    base_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> MergeResult:
    """Merges a PEFT adapter into its base and saves the result as a plain model folder.

    Args:
        base_dir: The base model folder (config.json, safetensors).
        adapter_dir: The adapter folder (adapter_config.json, adapter weights, and maybe a
            tokenizer, which is then the one the merged model gets).
        out_dir: Folder to create; must not exist yet.
        progress: Called as `progress(done_steps, total_steps)` after loading the base, loading
            the adapter, merging and saving; raising from it cancels the merge.

    Returns:
        Where and what was written.

    Raises:
        FailedPrecondition: the adapter cannot be merged, the base has no config.json or is
            itself quantized, or `out_dir` already exists.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    config = read_adapter_config(adapter_dir)
    if not (base_dir / "config.json").is_file():
        raise exceptions.FailedPrecondition(f"{base_dir.name} has no config.json; is it a model?")
    if out_dir.exists():
        raise exceptions.FailedPrecondition(f"{out_dir} already exists; merge into a new folder")
    quantized = _quant_method(base_dir)
    if quantized:
        # Folding a delta into already rounded weights would round it away again.
        raise exceptions.FailedPrecondition(
            f"{base_dir.name} is a {quantized} checkpoint; merge into its unquantized base"
        )
    dtype_name = config_dtype(base_dir)
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise exceptions.FailedPrecondition(
            f"{base_dir.name} declares an unknown dtype {dtype_name}"
        )
    kind = adapter_type(config)
    started = time.monotonic()

    def step(done: int) -> None:
        if progress is not None:
            progress(done, _STEPS)

    # float32 whatever the base's dtype: the adapter's delta is folded in at full precision.
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tie = bool(getattr(model.config, "tie_word_embeddings", False))
    step(1)
    model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    step(2)
    model = model.merge_and_unload(safe_merge=True)
    tied = tie and _same_tensor(model)
    if tie and not tied:
        # The adapter changed the head or the embedding alone: keep both, or the merged model
        # would not compute what base + adapter computed.
        log.warning("the adapter unties the embeddings of %s; saving both", base_dir.name)
        model.config.tie_word_embeddings = False
    model = model.to(dtype)
    model.config.dtype = dtype_name
    step(3)

    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        tokenizer_from = "adapter" if _has_tokenizer(adapter_dir) else "base"
        _copy_tokenizer(adapter_dir if tokenizer_from == "adapter" else base_dir, tmp)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    step(4)
    weight_bytes = sum(f.stat().st_size for f in out_dir.glob("*.safetensors"))
    result = MergeResult(
        path=out_dir,
        size_bytes=sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()),
        weight_bytes=weight_bytes,
        parameters=sum(p.numel() for p in model.parameters()),
        dtype=dtype_name,
        tied_embeddings=tied,
        adapter_type=kind,
        tokenizer_from=tokenizer_from,
    )
    log.info(
        "merged %s adapter %s into %s: %s, %d bytes, tied embeddings %s, in %.1f s",
        kind,
        adapter_dir.name,
        base_dir.name,
        dtype_name,
        result.size_bytes,
        tied,
        time.monotonic() - started,
    )
    return result


def _quant_method(model_dir: Path) -> str:
    """The quantization a model folder's config declares ("" for none)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return str((config.get("quantization_config") or {}).get("quant_method", ""))


def _same_tensor(model: Any) -> bool:
    """Whether the model's output embedding is its input embedding (the same storage)."""
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    if head is None or embed is None:
        return False
    return head.weight.data_ptr() == embed.weight.data_ptr()


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file()


def _copy_tokenizer(source: Path, dest: Path) -> None:
    """Copies the tokenizer files `source` has into `dest`, byte for byte."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
