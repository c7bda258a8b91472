"""Sliding-window perplexity on a tiny random Llama: one pass when it fits, each token once."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from forgeline.quantizer.merge import TOKENIZER_FILES
from forgeline.quantizer.perplexity import load_for_scoring, model_perplexity, perplexity

TEXTS = [
    "The capital of France is Paris.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "A triangle has three sides and three angles.",
]


@pytest.fixture(scope="module")
def tiny(bundled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama with the bundled tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=49152,
        max_position_embeddings=256,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (bundled_model / name).is_file():
            shutil.copy(bundled_model / name, folder / name)
    return folder


def single_pass(model, tokenizer, texts) -> float:
    ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids
    with torch.no_grad():
        return math.exp(model(ids, labels=ids).loss.item())


def test_a_window_over_the_whole_text_is_one_pass(tiny: Path):
    model, tokenizer = load_for_scoring(tiny)
    assert next(model.parameters()).dtype == torch.float32
    expected = single_pass(model, tokenizer, TEXTS)
    assert perplexity(tiny, TEXTS, max_length=256, stride=256) == pytest.approx(expected, rel=1e-5)
    # With the whole text in one window, the stride changes nothing.
    assert model_perplexity(model, tokenizer, TEXTS, 256, 7) == pytest.approx(expected, rel=1e-5)


def test_sliding_windows_score_every_token_once(tiny: Path):
    model, tokenizer = load_for_scoring(tiny)
    ids = tokenizer("\n\n".join(TEXTS), return_tensors="pt").input_ids[0]
    # By hand: a token is scored by the first window that reaches it, with the context that
    # window gives it (windows start every `stride` tokens and hold `max_length`).
    max_length, stride = 16, 8
    nll, count = 0.0, 0
    with torch.no_grad():
        for position in range(1, len(ids)):
            window = 0 if position < max_length else (position - max_length) // stride + 1
            context = ids[window * stride : position + 1][None]
            log_probs = torch.log_softmax(model(context).logits[0, -2], -1)
            nll -= log_probs[ids[position]].item()
            count += 1
    expected = math.exp(nll / count)
    got = model_perplexity(model, tokenizer, TEXTS, max_length, stride)
    assert got == pytest.approx(expected, rel=1e-4)
    assert got != pytest.approx(single_pass(model, tokenizer, TEXTS), rel=1e-4)


def test_a_loader_can_be_given(tiny: Path):
    calls = []

    def loader(folder: Path):
        calls.append(folder)
        return load_for_scoring(folder)

    assert perplexity(tiny, TEXTS, loader=loader) > 1.0
    assert calls == [tiny]


def test_bad_settings_are_refused(tiny: Path):
    model, tokenizer = load_for_scoring(tiny)
    with pytest.raises(ValueError, match="stride"):
        model_perplexity(model, tokenizer, TEXTS, max_length=8, stride=9)
    with pytest.raises(ValueError, match="two tokens"):
        model_perplexity(model, tokenizer, [""], max_length=8, stride=8)
