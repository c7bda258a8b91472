"""Quantized layers' widths from config.json, the group size choice and its refusals, bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forgeline.client.exceptions import FailedPrecondition, InvalidArgument
from forgeline.quantizer.layers import (
    choose_group_size,
    float32_layer_bytes,
    folder_bytes,
    layer_bytes,
    quantized_linear_widths,
    tensor_bytes,
)
from forgeline.quantizer.methods import supported_bits

SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30}
SMOLLM2_WIDTHS = {
    f"model.layers.{i}.{module}": 1536 if module == "mlp.down_proj" else 576
    for i in range(30)
    for module in (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
}


def write_config(folder: Path, **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_widths_of_smollm2_come_from_its_config(bundled_model: Path):
    widths = quantized_linear_widths(bundled_model)
    assert widths == SMOLLM2_WIDTHS
    assert not any("lm_head" in name or "embed" in name for name in widths)


def test_widths_need_no_weights(tmp_path: Path):
    folder = write_config(tmp_path / "m", model_type="qwen2", num_attention_heads=9, **SMOLLM2)
    assert quantized_linear_widths(folder) == SMOLLM2_WIDTHS


def test_attention_output_width_is_heads_times_head_dim(tmp_path: Path):
    folder = write_config(
        tmp_path / "m",
        model_type="llama",
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=1,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=96,
    )
    widths = quantized_linear_widths(folder)
    assert widths["model.layers.0.self_attn.o_proj"] == 768
    assert widths["model.layers.0.self_attn.q_proj"] == 512
    assert widths["model.layers.0.mlp.down_proj"] == 1024


def test_other_architectures_are_read_from_the_weight_headers(bundled_model: Path, tmp_path: Path):
    config = json.loads((bundled_model / "config.json").read_text())
    folder = write_config(tmp_path / "m", **{**config, "model_type": "somethingnew"})
    os.symlink(bundled_model / "model.safetensors", folder / "model.safetensors")
    assert quantized_linear_widths(folder) == SMOLLM2_WIDTHS


def test_a_folder_without_config_is_refused(tmp_path: Path):
    with pytest.raises(FailedPrecondition, match=r"config\.json"):
        quantized_linear_widths(tmp_path)


def test_automatic_group_size_is_the_largest_that_divides_every_width():
    assert choose_group_size(SMOLLM2_WIDTHS, 0) == 64
    assert choose_group_size({"a": 1024, "b": 4096}, 0) == 128
    assert choose_group_size({"a": 96}, 0) == 32
    assert choose_group_size({"a": 100}, 0) == -1


def test_explicit_group_sizes_that_divide_are_kept():
    assert choose_group_size(SMOLLM2_WIDTHS, 64) == 64
    assert choose_group_size(SMOLLM2_WIDTHS, 32) == 32
    assert choose_group_size(SMOLLM2_WIDTHS, -1) == -1


def test_a_group_size_that_does_not_divide_names_the_widths_and_layers():
    with pytest.raises(InvalidArgument) as caught:
        choose_group_size(SMOLLM2_WIDTHS, 128)
    (violation,) = caught.value.violations
    assert violation.field == "spec.group_size"
    assert "576 (model.layers.0.self_attn.q_proj and 179 more)" in violation.description
    assert "1536" not in violation.description
    assert "use 64 or 32" in violation.description


def test_a_group_size_vllm_does_not_serve_is_refused():
    for size in (16, 100, 256, -2):
        with pytest.raises(InvalidArgument) as caught:
            choose_group_size({"a": 1024}, size)
        assert caught.value.violations[0].field == "spec.group_size"
        assert "128, 64, 32" in caught.value.violations[0].description


def test_supported_bits():
    assert supported_bits("gptq") == (4, 8)
    assert supported_bits("awq") == (4,)
    assert supported_bits("nf4") == (4,)
    assert supported_bits("int8") == (8,)
    with pytest.raises(InvalidArgument, match=r"spec\.method"):
        supported_bits("fp3")


def test_bytes_of_the_bundled_model(bundled_model: Path):
    widths = quantized_linear_widths(bundled_model)
    # q, k, v, o, gate, up, down of one block: (out, in); k and v have 3 heads of 64.
    shapes = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
    float32 = 30 * 4 * sum(rows * cols for rows, cols in shapes)
    assert float32_layer_bytes(bundled_model, widths) == float32
    # The bundled model is float32: its layers take their float32 bytes on disk.
    assert layer_bytes(bundled_model, widths) == float32
    assert tensor_bytes(bundled_model)["model.embed_tokens.weight"] == 4 * 49152 * 576
    config = bundled_model / "config.json"
    assert folder_bytes(config) == config.stat().st_size
    assert folder_bytes(bundled_model) > (bundled_model / "model.safetensors").stat().st_size


def test_layer_bytes_refuses_layers_missing_from_the_folder(bundled_model: Path):
    with pytest.raises(FailedPrecondition, match=r"model\.layers\.99\.mlp\.up_proj"):
        layer_bytes(bundled_model, ["model.layers.0.mlp.up_proj", "model.layers.99.mlp.up_proj"])
