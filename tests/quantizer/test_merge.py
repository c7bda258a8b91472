"""Merging LoRA, DoRA and QLoRA-trained adapters: same greedy answers, ties kept, dtype, refusals.

Adapters are made here with peft, with random non-zero B matrices so that the adapter really
changes the model's outputs; the merged folder must then answer exactly as base + adapter.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

from forgeline.client.exceptions import FailedPrecondition
from forgeline.quantizer.merge import TOKENIZER_FILES, merge_adapter

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def make_adapter(
    base_dir: Path, folder: Path, *, use_dora: bool = False, qlora: bool = False, seed: int = 0
) -> Path:
    """Saves a random LoRA (or DoRA) adapter for `base_dir` in `folder`.

    With `qlora`, the adapter is built the QLoRA way: on the base loaded in NF4 and prepared
    for k-bit training.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.manual_seed(seed)
    if qlora:
        model = AutoModelForCausalLM.from_pretrained(
            base_dir,
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.float32,
            ),
            dtype=torch.float32,
            device_map={"": "cpu"},
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=TARGETS, use_dora=use_dora, task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    model.save_pretrained(folder)
    return folder


def prompt(tokenizer) -> dict:
    return tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def last_logits(model, tokenizer) -> torch.Tensor:
    """Logits of the prompt's last position (the first answer token)."""
    with torch.no_grad():
        return model(**prompt(tokenizer)).logits[0, -1]


def greedy(model, tokenizer) -> tuple[list[int], torch.Tensor]:
    """16 greedy tokens answering QUESTION, and the logits of the prompt's last position."""
    inputs = prompt(tokenizer)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist(), last_logits(model, tokenizer)


def reference(base_dir: Path, adapter_dir: Path):
    """Greedy tokens and logits of the float32 base with the adapter applied unmerged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base_logits = last_logits(base, tokenizer)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    tokens, logits = greedy(model, tokenizer)
    return tokens, logits, base_logits, tokenizer


def safetensors_header(folder: Path) -> dict:
    with open(folder / "model.safetensors", "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


@pytest.mark.parametrize(
    "kind, use_dora, qlora", [("lora", False, False), ("dora", True, False), ("lora", False, True)]
)
def test_merged_model_answers_as_base_plus_adapter(
    bundled_model: Path, tmp_path: Path, kind: str, use_dora: bool, qlora: bool
):
    from transformers import AutoModelForCausalLM

    adapter = make_adapter(bundled_model, tmp_path / "adapter", use_dora=use_dora, qlora=qlora)
    tokens, logits, base_logits, tokenizer = reference(bundled_model, adapter)
    # The adapter really changes the model.
    assert (logits - base_logits).abs().max() > 0.05

    steps = []
    result = merge_adapter(
        bundled_model, adapter, tmp_path / "merged", lambda d, t: steps.append((d, t))
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.adapter_type == kind
    assert result.tied_embeddings and result.dtype == "float32"
    assert result.tokenizer_from == "base"

    merged = AutoModelForCausalLM.from_pretrained(result.path)
    merged_tokens, merged_logits = greedy(merged, tokenizer)
    assert merged_tokens == tokens
    assert torch.allclose(merged_logits, logits, atol=2e-3, rtol=0)

    # Ties kept: no separate head on disk, one tensor once loaded.
    assert "lm_head.weight" not in safetensors_header(result.path)
    assert json.loads((result.path / "config.json").read_text())["tie_word_embeddings"] is True
    assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()
    assert result.weight_bytes < (bundled_model / "model.safetensors").stat().st_size + 1_000_000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def tiny_base(bundled_model: Path, folder: Path, dtype: torch.dtype) -> Path:
    """A random 2-layer Llama with tied embeddings, saved in `dtype` with the bundled tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

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
    LlamaForCausalLM(config).to(dtype).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (bundled_model / name).is_file():
            shutil.copy(bundled_model / name, folder / name)
    return folder


def test_merge_keeps_the_base_dtype(bundled_model: Path, tmp_path: Path):
    base = tiny_base(bundled_model, tmp_path / "base", torch.bfloat16)
    adapter = make_adapter(base, tmp_path / "adapter")
    result = merge_adapter(base, adapter, tmp_path / "merged")
    assert result.dtype == "bfloat16"
    header = safetensors_header(result.path)
    assert {meta["dtype"] for name, meta in header.items() if name != "__metadata__"} == {"BF16"}
    assert "lm_head.weight" not in header


def test_the_adapter_tokenizer_wins(bundled_model: Path, tmp_path: Path):
    base = tiny_base(bundled_model, tmp_path / "base", torch.float32)
    adapter = make_adapter(base, tmp_path / "adapter")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(base / name, adapter / name)
    (adapter / "chat_template.jinja").write_text("{{ 'adapter template' }}")
    result = merge_adapter(base, adapter, tmp_path / "merged")
    assert result.tokenizer_from == "adapter"
    assert (result.path / "chat_template.jinja").read_text() == "{{ 'adapter template' }}"
    assert (result.path / "tokenizer.json").read_bytes() == (
        adapter / "tokenizer.json"
    ).read_bytes()


def test_refusals_leave_nothing_behind(bundled_model: Path, tmp_path: Path):
    base = tiny_base(bundled_model, tmp_path / "base", torch.float32)
    adapter = make_adapter(base, tmp_path / "adapter")
    with pytest.raises(FailedPrecondition, match="adapter_config"):
        merge_adapter(base, tmp_path / "base", tmp_path / "out")
    prompt = tmp_path / "prompt"
    prompt.mkdir()
    (prompt / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    with pytest.raises(FailedPrecondition, match="PROMPT_TUNING adapter cannot be merged"):
        merge_adapter(base, prompt, tmp_path / "out")
    quantized = tmp_path / "quantized"
    shutil.copytree(base, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(FailedPrecondition, match="bitsandbytes checkpoint"):
        merge_adapter(quantized, adapter, tmp_path / "out")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FailedPrecondition, match="already exists"):
        merge_adapter(base, adapter, tmp_path / "exists")

    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        if done == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        merge_adapter(base, adapter, tmp_path / "out", cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter",
        "base",
        "exists",
        "prompt",
        "quantized",
    ]
