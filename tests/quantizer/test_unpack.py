"""Unpacking GPTQ and AWQ checkpoints, checked against auto-round's own kernels and dequantizer.

A tiny random Llama is rounded to nearest by auto-round (no calibration, seconds) and exported
in both formats; the unpacked weights must be what auto-round's GPTQ layer computes with and
what its AWQ dequantizer returns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from forgeline.client.exceptions import FailedPrecondition
from forgeline.quantizer.merge import TOKENIZER_FILES
from forgeline.quantizer.unpack import load_unpacked, unpack_gptq, unpacked_state_dict

LAYER = "model.layers.1.mlp.down_proj"


def tiny_rounded(bundled_model: Path, folder: Path, fmt: str, sym: bool) -> Path:
    """A random 2-layer tied Llama, rounded to 4 bits in groups of 32 and exported as `fmt`."""
    from auto_round import AutoRound
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=49152,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    tokenizer = AutoTokenizer.from_pretrained(bundled_model)
    rounder = AutoRound(
        model,
        tokenizer,
        bits=4,
        group_size=32,
        sym=sym,
        iters=0,
        disable_opt_rtn=True,
        device_map="cpu",
    )
    rounder.quantize()
    rounder.save_quantized(str(folder), format=fmt)
    for name in TOKENIZER_FILES:
        if (bundled_model / name).is_file() and not (folder / name).exists():
            shutil.copy(bundled_model / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def gptq(bundled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_rounded(bundled_model, tmp_path_factory.mktemp("q") / "gptq", "auto_gptq", True)


@pytest.fixture(scope="module")
def awq(bundled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_rounded(bundled_model, tmp_path_factory.mktemp("q") / "awq", "auto_awq", False)


def test_gptq_weights_are_what_auto_rounds_layer_computes_with(gptq: Path):
    from transformers import AutoModelForCausalLM, AutoRoundConfig

    assert (
        json.loads((gptq / "config.json").read_text())["quantization_config"]["quant_method"]
        == "gptq"
    )
    state = unpacked_state_dict(gptq)
    model = AutoModelForCausalLM.from_pretrained(
        gptq, quantization_config=AutoRoundConfig(), device_map="cpu"
    )
    for name in (LAYER, "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"):
        layer = model.get_submodule(name)
        x = torch.randn(5, state[f"{name}.weight"].shape[1])
        with torch.no_grad():
            expected = layer(x)
        assert torch.allclose(x @ state[f"{name}.weight"].T, expected, atol=1e-4, rtol=1e-5)


def test_awq_weights_are_what_auto_rounds_dequantizer_returns(awq: Path):
    from auto_round.export.export_to_awq.utils import dequantize_gemm
    from safetensors.torch import load_file

    config = json.loads((awq / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "awq" and config["zero_point"] is True
    raw = load_file(awq / "model.safetensors")
    state = unpacked_state_dict(awq)
    for name in (LAYER, "model.layers.0.self_attn.v_proj"):
        reference = dequantize_gemm(
            raw[f"{name}.qweight"], raw[f"{name}.qzeros"], raw[f"{name}.scales"], 4, 32
        )
        # auto-round multiplies in float16; the unpacked weight is the same product in float32.
        assert torch.equal(state[f"{name}.weight"].T.half(), reference.half())


def test_unpacked_models_are_plain_float32_and_keep_ties(gptq: Path, awq: Path):
    for folder in (gptq, awq):
        model = load_unpacked(folder)
        assert not hasattr(model.config, "quantization_config")
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        with torch.no_grad():
            assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_gptq_unpacking_by_hand():
    # Two input rows per group, 8 rows packed per word, zero point 8 stored as 7.
    q = torch.arange(16, dtype=torch.int32).reshape(16, 1) % 16
    words = torch.zeros(2, 1, dtype=torch.int32)
    for row in range(16):
        words[row // 8, 0] |= int(q[row, 0]) << (4 * (row % 8))
    zeros = torch.full((8, 1), 7, dtype=torch.int32)  # one output column, 8 groups
    scales = torch.arange(1, 9, dtype=torch.float16).reshape(8, 1)
    weight = unpack_gptq(words, zeros, scales, None, 4, 2)
    expected = torch.tensor([(row - 8) * (row // 2 + 1) for row in range(16)], dtype=torch.float32)
    assert torch.equal(weight[0], expected)


def test_plain_folders_are_refused(bundled_model: Path):
    with pytest.raises(FailedPrecondition, match="not a GPTQ or AWQ"):
        unpacked_state_dict(bundled_model)
