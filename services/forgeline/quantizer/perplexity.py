"""Perplexity of a model folder on some texts: the sliding-window method, loaded for CPU or GPU.

The texts are joined (blank line between texts) and scored in windows of `max_length`
tokens that advance by `stride`; each window scores only the tokens the previous one did not,
with the rest as context, so every token after the first is scored exactly once.

`load_for_scoring` loads whatever folder the quantizer reads or writes. Plain and bitsandbytes
folders load as they are; GPTQ and AWQ folders are unpacked once into a plain float32 model
holding exactly the quantized weights (`unpack`), since transformers runs them on CPU only
slowly (GPTQ) or not at all (AWQ) without extra kernel packages.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Loader = Callable[[Path], tuple[Any, Any]]


def perplexity(
    model_dir: Path,
    texts: list[str],
    max_length: int = 512,
    stride: int = 256,
    loader: Loader | None = None,
) -> float:
    """Perplexity of the model in `model_dir` on `texts`.

    Args:
        model_dir: A model folder: plain, GPTQ, AWQ or bitsandbytes.
        texts: The texts, joined with a blank line between them.
        max_length: Tokens per window (context plus scored tokens).
        stride: Tokens the window advances by; at most `max_length`.
        loader: Called as `loader(model_dir)` for `(model, tokenizer)`; defaults to
            `load_for_scoring`.

    Returns:
        exp(mean negative log-likelihood per scored token).

    Raises:
        ValueError: the texts hold fewer than two tokens, or the window settings are wrong.
    """
    model, tokenizer = (loader or load_for_scoring)(Path(model_dir))
    return model_perplexity(model, tokenizer, texts, max_length, stride)


def model_perplexity(
    model: Any, tokenizer: Any, texts: list[str], max_length: int = 512, stride: int = 256
) -> float:
    """Perplexity of an already loaded causal LM on `texts` (see `perplexity`).

    Raises:
        ValueError: the texts hold fewer than two tokens, or the window settings are wrong.
    """
    import torch

    if not 0 < stride <= max_length:
        raise ValueError(f"stride must be in 1..max_length ({max_length}), got {stride}")
    ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids
    total = ids.size(1)
    if total < 2:
        raise ValueError("perplexity needs texts of at least two tokens")
    device = next(model.parameters()).device
    nll, scored, previous_end = 0.0, 0, 0
    model.eval()
    for begin in range(0, total, stride):
        end = min(begin + max_length, total)
        window = ids[:, begin:end].to(device)
        with torch.no_grad():
            logits = model(window).logits[0, :-1].float()
        targets = window[0, 1:]
        # Tokens up to `previous_end` were scored by an earlier window; position 0 of the
        # window has no prediction for it.
        first = max(previous_end - begin, 1) - 1
        log_probs = torch.log_softmax(logits[first:], dim=-1)
        nll -= log_probs.gather(-1, targets[first:, None]).sum().item()
        scored += targets.size(0) - first
        previous_end = end
        if end == total:
            break
    log.debug("scored %d tokens in windows of %d every %d", scored, max_length, stride)
    return math.exp(nll / scored)


def load_for_scoring(model_dir: Path) -> tuple[Any, Any]:
    """Loads a folder the quantizer reads or writes as `(model, tokenizer)`, ready to score.

    Plain folders load in float32 (CPU) or their own dtype (GPU); bitsandbytes folders as
    saved; GPTQ and AWQ folders unpacked into float32 layers holding exactly the quantized
    weights (`unpack.load_unpacked`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    method = str(config.get("quantization_config", {}).get("quant_method", "")).lower()
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if method in ("gptq", "awq"):
        from forgeline.quantizer.unpack import load_unpacked

        model = load_unpacked(model_dir, device)
    elif method == "bitsandbytes":
        model = AutoModelForCausalLM.from_pretrained(model_dir, device_map={"": device})
    else:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype="auto" if on_gpu else torch.float32, device_map={"": device}
        )
    return model.eval(), tokenizer
