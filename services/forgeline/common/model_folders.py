"""What makes a folder a Hugging Face model: which files it needs, checks, and a description.

A model is its config.json, one kind of weights (safetensors when there are any, else
PyTorch .bin files), a tokenizer with a vocabulary, and optionally a generation config,
chat template, model card and license files. Only top-level files count; everything else
in a folder (optimizer states, ONNX exports, other formats) is left out.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from pathlib import Path

from forgeline.client import exceptions
from forgeline.client.transfer import folder_files

log = logging.getLogger(__name__)

# What a model needs besides its weights (top-level file name patterns).
SUPPORT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "sentencepiece*.model",
    "*.tiktoken",
    "chat_template*",
    "README.md",
    "LICENSE*",
)
# Weights in the order they are preferred: safetensors, else PyTorch pickles.
SAFETENSORS_FILES = ("model*.safetensors", "model.safetensors.index.json")
PYTORCH_FILES = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
WEIGHT_FILES = (SAFETENSORS_FILES, PYTORCH_FILES)
# Files that hold a vocabulary (tokenizer_config.json alone does not).
_VOCABULARY_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece*.model",
    "*.tiktoken",
)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def has_weights(folder: Path, patterns: tuple[str, ...]) -> bool:
    """Whether `folder` holds weight files matching `patterns` (index files do not count)."""
    return any(
        _matches(p.name, patterns) and not p.name.endswith(".json")
        for p in folder.iterdir()
        if p.is_file()
    )


def select_files(folder: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files of `folder` a model needs, and the paths left out.

    Top-level support files plus one kind of weights: safetensors when there are any.
    """
    weights = next((w for w in WEIGHT_FILES if has_weights(folder, w)), ())
    wanted, left_out = [], []
    for rel, path in folder_files(folder):
        keep = "/" not in rel and _matches(rel, SUPPORT_FILES + weights)
        (wanted if keep else left_out).append((rel, path))
    return wanted, [rel for rel, _ in left_out]


def check_folder(folder: Path, files: list[tuple[str, Path]]) -> dict:
    """Checks that `files` of `folder` make a model transformers can load; returns its config.

    Every missing piece is reported at once. The config must load with `AutoConfig`; the
    weights are not read.

    Raises:
        InvalidArgument: config.json, weights, a shard of the weight index or a tokenizer
            is missing, or transformers cannot load the config; names the folder.
    """
    names = {rel for rel, _ in files}
    problems = exceptions.Violations()
    problems.check("config.json" in names, "source", f"{folder} has no config.json")
    has_any_weights = any(
        _matches(n, w) and not n.endswith(".json") for n in names for w in WEIGHT_FILES
    )
    problems.check(
        has_any_weights,
        "source",
        f"{folder} has no weights (model*.safetensors or pytorch_model*.bin)",
    )
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if index in names:
            shards = _index_shards(folder / index)
            missing = sorted(shards - names)
            problems.check(
                not missing, "source", f"{folder}: {index} lists missing shards {missing}"
            )
    problems.check(
        any(_matches(n, _VOCABULARY_FILES) for n in names),
        "source",
        f"{folder} has no tokenizer (tokenizer.json, tokenizer.model, vocab.json, ...)",
    )
    problems.raise_if_any()
    return _load_config(folder)


def _index_shards(index: Path) -> set[str]:
    try:
        return set(json.loads(index.read_text())["weight_map"].values())
    except (ValueError, KeyError, AttributeError) as exc:
        message = f"{index} is not a weight index: {exc}"
        raise exceptions.InvalidArgument("source", message) from None


def _load_config(folder: Path) -> dict:
    from transformers import AutoConfig

    try:
        config = json.loads((folder / "config.json").read_text())
        AutoConfig.from_pretrained(folder)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise exceptions.InvalidArgument(
            "source", f"{folder}/config.json: transformers cannot load it: {exc}"
        ) from None
    if not isinstance(config, dict):
        raise exceptions.InvalidArgument("source", f"{folder}/config.json is not a JSON object")
    return config


def read_license(folder: Path, config: dict, fallback: str = "") -> str:
    """The model's license: model card front matter, else config, else `fallback`, else unknown.

    A card's `license: other` is refined by its `license_name`.
    """
    card = folder / "README.md"
    if card.is_file():
        from huggingface_hub.repocard import metadata_load

        try:
            meta = metadata_load(card) or {}
        except Exception as exc:  # a malformed card must not stop an import
            log.warning("cannot read the front matter of %s: %s", card, exc)
            meta = {}
        value = meta.get("license")
        if value == "other" and meta.get("license_name"):
            value = meta["license_name"]
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        if value:
            return str(value)
    return str(config.get("license") or fallback or "unknown")


def architecture_of(config: dict) -> str:
    """`architectures[0]` of a config, else its `model_type`, else unknown."""
    architectures = config.get("architectures") or []
    return str(architectures[0] if architectures else config.get("model_type") or "unknown")
