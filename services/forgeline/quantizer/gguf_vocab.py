"""The tokenizer of a Hugging Face folder as GGUF metadata (llama.cpp's `gpt2` tokenizer model).

A GGUF file carries no `tokenizer.json`: it stores the token list, each token's type, the
BPE merges, the special token ids, the chat template and the name of the pre-tokenizer
(`tokenizer.ggml.pre`), from which llama.cpp picks its text-splitting regex. Only byte-level
BPE tokenizers (SmolLM2, Llama 3, GPT-2 style) are written; the pre-tokenizer name is read
from the structure of `tokenizer.json`, so a tokenizer whose splitting has no llama.cpp
equivalent is refused instead of written with the wrong one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from forgeline.client import exceptions

log = logging.getLogger(__name__)

# The split regex of Llama 3's `tokenizer.json`, which llama.cpp calls "llama-bpe".
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLIT_NAMES = {LLAMA3_SPLIT: "llama-bpe"}


@dataclass(frozen=True)
class GgufVocab:
    """Everything `tokenizer.*` in a GGUF file says about one tokenizer."""

    pre: str
    tokens: list[str]
    token_types: list[int]
    special: gguf.SpecialVocab

    def add_to(self, writer: gguf.GGUFWriter) -> None:
        """Writes the tokenizer keys (model, pre-tokenizer, tokens, merges, special ids)."""
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.token_types)
        self.special.add_to_gguf(writer, quiet=True)


def read_vocab(model_dir: Path, vocab_size: int) -> GgufVocab:
    """Reads `tokenizer.json` (and `tokenizer_config.json`, chat template) of `model_dir`.

    Args:
        model_dir: A Hugging Face model folder.
        vocab_size: Rows of the model's embedding; ids the tokenizer does not use are
            written as unused placeholder tokens, as llama.cpp does.

    Raises:
        FailedPrecondition: there is no `tokenizer.json`, it is not a byte-level BPE
            tokenizer, its pre-tokenizer has no llama.cpp equivalent, it has no merges, or
            it uses ids beyond the embedding.
    """
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise exceptions.FailedPrecondition(
            f"{model_dir.name} has no tokenizer.json; GGUF export needs the fast tokenizer",
            subject="tokenizer.json",
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        kind = model.get("type") or "unknown"
        if model.get("byte_fallback"):
            kind = "SentencePiece-style BPE"
        raise exceptions.FailedPrecondition(
            f"tokenizer of {model_dir.name} is {kind}; GGUF export supports byte-level BPE "
            "tokenizers only",
            subject="tokenizer.json",
        )
    if data.get("normalizer"):
        raise exceptions.FailedPrecondition(
            f"tokenizer of {model_dir.name} has a normalizer "
            f"({data['normalizer'].get('type')}), which GGUF's byte-level tokenizer cannot express",
            subject="tokenizer.json",
        )
    pre = pre_tokenizer_name(data.get("pre_tokenizer"))
    if pre is None:
        raise exceptions.FailedPrecondition(
            f"the pre-tokenizer of {model_dir.name} "
            f"({json.dumps(data.get('pre_tokenizer'))[:200]}) "
            "has no llama.cpp equivalent; supported: GPT-2 byte-level, SmolLM (single digits), "
            "Llama 3",
            subject="tokenizer.json",
        )
    tokens, types = _token_list(
        model.get("vocab") or {}, data.get("added_tokens") or [], vocab_size
    )
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise exceptions.FailedPrecondition(
            f"tokenizer.json of {model_dir.name} has no merges", subject="tokenizer.json"
        )
    # The Hugging Face tokenizer adds a BOS only where its post-processor says so; llama.cpp
    # assumes one for this tokenizer model unless told otherwise.
    special.add_special_token.setdefault("bos", False)
    log.debug("vocab of %s: %d tokens, pre-tokenizer %s", model_dir.name, len(tokens), pre)
    return GgufVocab(pre=pre, tokens=tokens, token_types=types, special=special)


def pre_tokenizer_name(pre_tokenizer: dict[str, Any] | None) -> str | None:
    """llama.cpp's name (`tokenizer.ggml.pre`) for a `tokenizer.json` pre-tokenizer, or None.

    llama.cpp names pre-tokenizers by hashing a sample encoding against a table of known
    models; the structure of the pre-tokenizer says the same for the few shapes written here.
    """
    if not pre_tokenizer:
        return None
    steps = pre_tokenizer.get("pretokenizers", [pre_tokenizer])
    kinds = [step.get("type") for step in steps]
    last = steps[-1]
    if kinds[-1] != "ByteLevel" or last.get("add_prefix_space"):
        return None
    if kinds == ["ByteLevel"] and last.get("use_regex", True):
        return "gpt-2"
    first = steps[0]
    if kinds == ["Digits", "ByteLevel"] and first.get("individual_digits"):
        return "smollm" if last.get("use_regex", True) else None
    if kinds == ["Split", "ByteLevel"] and not last.get("use_regex", True):
        if first.get("behavior") != "Isolated" or first.get("invert"):
            return None
        return _SPLIT_NAMES.get((first.get("pattern") or {}).get("Regex"))
    return None


def _token_list(
    vocab: dict[str, int], added: list[dict[str, Any]], vocab_size: int
) -> tuple[list[str], list[int]]:
    """Tokens by id and their GGUF types, padded to `vocab_size` as llama.cpp pads them."""
    by_id: dict[int, tuple[str, int]] = {
        index: (token, gguf.TokenType.NORMAL) for token, index in vocab.items()
    }
    for entry in added:
        content = entry["content"]
        special = entry.get("special") or (content.startswith("<|") and content.endswith("|>"))
        kind = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
        by_id[entry["id"]] = (content, kind)
    too_large = [index for index in by_id if index >= vocab_size]
    if too_large:
        raise exceptions.FailedPrecondition(
            f"the tokenizer uses id {max(too_large)} but the model embeds only {vocab_size} tokens"
        )
    tokens: list[str] = []
    types: list[int] = []
    for index in range(vocab_size):
        token, kind = by_id.get(index, (f"[PAD{index}]", gguf.TokenType.UNUSED))
        tokens.append(token)
        types.append(int(kind))
    return tokens, types
