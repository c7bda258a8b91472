"""Model sources for the intake tests: a tiny model folder, a Hugging Face cache, GGUF files.

The tiny model is a real config transformers loads, a tokenizer file and a small
safetensors file; nothing loads its weights, so it costs nothing to import.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "num_hidden_layers": 1,
    "vocab_size": 32,
}
TINY_CARD = "---\nlicense: mit\nlanguage: en\n---\n# Tiny\n\nA test model.\n"


def write_tiny_model(folder: Path, *, card: str | None = TINY_CARD) -> Path:
    """Writes a small but well-formed Hugging Face model folder; returns it."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": 8}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {}}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    weights = {"embed": np.arange(32, dtype=np.float32).reshape(4, 8)}
    save_file(weights, folder / "model.safetensors")
    if card is not None:
        (folder / "README.md").write_text(card)
    return folder


def add_to_hf_cache(
    cache: Path, repo_id: str, model: Path, *, commit: str, refs: tuple[str, ...] = ("main",)
) -> Path:
    """Lays `model`'s files out as huggingface_hub caches them; returns the snapshot folder.

    `models--org--name/blobs/<sha256>` holds the content, `snapshots/<commit>/<file>` are
    relative symlinks to it, and each of `refs` (`refs/main`, ...) names the commit.
    """
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for file in sorted(p for p in model.rglob("*") if p.is_file()):
        rel = file.relative_to(model)
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.write_bytes(file.read_bytes())
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def write_gguf(path: Path, architecture: str) -> Path:
    """Writes a one-tensor GGUF file declaring `general.architecture`; returns its path."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(path, architecture)
    writer.add_name("tiny")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
