"""Checks of GPTQ, AWQ and bitsandbytes requests made before quantizing; calibration sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.client.exceptions import FailedPrecondition, InvalidArgument
from forgeline.quantizer.calibration import calibration_samples
from forgeline.quantizer.methods import (
    default_symmetric,
    quantize_autoround,
    quantize_bnb,
)


def fields(exc: InvalidArgument) -> list[str]:
    return [v.field for v in exc.violations]


def autoround(bundled_model: Path, out: Path, method: str = "gptq", **overrides):
    args = {
        "bits": 4,
        "group_size": 0,
        "symmetric": None,
        "texts": ["some text"],
        "nsamples": 1,
        "seqlen": 8,
    }
    args.update(overrides)
    return quantize_autoround(bundled_model, out, method, **args)


def test_every_problem_of_a_request_is_reported_together(bundled_model: Path, tmp_path: Path):
    with pytest.raises(InvalidArgument) as caught:
        autoround(bundled_model, tmp_path / "out", bits=3, group_size=128, symmetric=False)
    assert fields(caught.value) == ["spec.bits", "spec.symmetric", "spec.group_size"]
    message = str(caught.value)
    assert "GPTQ is served at 4, 8 bits, not 3" in message
    assert "576 (model.layers.0.self_attn.q_proj" in message
    assert not (tmp_path / "out").exists()


def test_awq_is_4_bit_only(bundled_model: Path, tmp_path: Path):
    with pytest.raises(InvalidArgument) as caught:
        autoround(bundled_model, tmp_path / "out", "awq", bits=8)
    assert fields(caught.value) == ["spec.bits"]


def test_unknown_methods_are_refused(bundled_model: Path, tmp_path: Path):
    with pytest.raises(InvalidArgument) as caught:
        autoround(bundled_model, tmp_path / "out", "nf4")
    assert fields(caught.value) == ["spec.method"]
    with pytest.raises(InvalidArgument) as caught:
        quantize_bnb(bundled_model, tmp_path / "out", "gptq")
    assert fields(caught.value) == ["spec.method"]


def test_existing_output_folders_are_refused(bundled_model: Path, tmp_path: Path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FailedPrecondition, match="already exists"):
        autoround(bundled_model, tmp_path / "out")
    with pytest.raises(FailedPrecondition, match="already exists"):
        quantize_bnb(bundled_model, tmp_path / "out", "nf4")


def test_too_little_calibration_text_is_refused(bundled_model: Path, tmp_path: Path):
    with pytest.raises(InvalidArgument) as caught:
        autoround(bundled_model, tmp_path / "out", texts=["two words"], seqlen=512)
    assert fields(caught.value) == ["spec.calibration_dataset"]
    assert "fewer than one sequence of 512" in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_defaults_for_symmetry():
    assert default_symmetric("gptq") is True
    assert default_symmetric("awq") is False


def test_calibration_samples_spread_over_the_whole_text(bundled_model: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model)
    texts = [f"Paragraph {i}: " + "word " * 40 for i in range(20)]
    ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids[0]
    samples = calibration_samples(tokenizer, texts, 4, 32)
    assert [s.shape for s in samples] == [(1, 32)] * 4
    windows = len(ids) // 32
    for i, sample in enumerate(samples):
        start = (i * windows // 4) * 32
        assert sample[0].tolist() == ids[start : start + 32].tolist()
    # Fewer windows than asked: every window, once.
    assert len(calibration_samples(tokenizer, texts, 10_000, 32)) == windows
