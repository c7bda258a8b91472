"""GGUF export: the bundled SmolLM2 exported as F16 and Q8_0 loads back in transformers and
answers like the source; a tiny random Llama checks the exact round trip, untied heads and
Llama 3 RoPE factors; unsupported models are refused before anything is written."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader

from forgeline.client.exceptions import FailedPrecondition
from forgeline.quantizer import gguf_vocab
from forgeline.quantizer.gguf_export import GgufType, export_gguf, gguf_unsupported

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TEXTS = [
    "What is the capital of France?",
    "Hello, world! 12345 naïve café 東京 🚀",
    "def f(x):\n    return x  * 2\n\n",
    "<|im_start|>user\nhi<|im_end|>\n",
    "  leading spaces and\ttabs",
]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def greedy(model, tokenizer, new_tokens: int = 16) -> list[int]:
    """Greedy continuation of the chat-templated question, as token ids."""
    inputs = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return out[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.fixture(scope="module")
def exports(bundled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each type exported once: (result, progress calls, seconds)."""
    folder = tmp_path_factory.mktemp("gguf")
    done = {}
    for gguf_type in (GgufType.F16, GgufType.Q8_0):
        calls: list[tuple[int, int]] = []
        started = time.monotonic()
        result = export_gguf(
            bundled_model,
            folder / f"smollm2-{gguf_type}.gguf",
            gguf_type,
            progress=lambda done, total, calls=calls: calls.append((done, total)),
        )
        done[gguf_type] = (result, calls, time.monotonic() - started)
    return done


@pytest.fixture(scope="module")
def source(bundled_model: Path):
    """The source model, its tokenizer and its greedy answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model)
    model = AutoModelForCausalLM.from_pretrained(bundled_model, dtype=torch.float32)
    return model, tokenizer, greedy(model, tokenizer)


@pytest.fixture(scope="module")
def loaded(exports: dict):
    """Loads (model, tokenizer) of an export through transformers' GGUF reader, once per type."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = {}

    def load(gguf_type: GgufType):
        if gguf_type not in cache:
            path = exports[gguf_type][0].path
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
            cache[gguf_type] = model, tokenizer
        return cache[gguf_type]

    return load


def test_f16_answers_token_for_token_like_the_source(source, loaded):
    _, _, expected = source
    model, tokenizer = loaded(GgufType.F16)
    answer = greedy(model, tokenizer)
    assert answer == expected
    assert "Paris" in tokenizer.decode(answer)


def test_q8_0_still_says_paris(loaded):
    model, tokenizer = loaded(GgufType.Q8_0)
    assert "Paris" in tokenizer.decode(greedy(model, tokenizer), skip_special_tokens=True)


def test_tokenizer_from_gguf_encodes_like_the_source(source, loaded):
    _, expected, _ = source
    _, tokenizer = loaded(GgufType.F16)
    for text in TEXTS:
        assert tokenizer(text)["input_ids"] == expected(text)["input_ids"], text
    assert tokenizer.get_chat_template() == expected.get_chat_template()
    assert (tokenizer.bos_token, tokenizer.eos_token) == (expected.bos_token, expected.eos_token)


def test_sizes_against_the_fp32_weights(bundled_model: Path, exports: dict):
    fp32 = (bundled_model / "model.safetensors").stat().st_size
    f16, q8 = exports[GgufType.F16][0], exports[GgufType.Q8_0][0]
    assert f16.size_bytes == f16.path.stat().st_size
    assert 0.45 < f16.size_bytes / fp32 < 0.55
    assert 0.24 < q8.size_bytes / fp32 < 0.30


def test_layout_follows_llama_cpp(exports: dict):
    reader = GGUFReader(exports[GgufType.Q8_0][0].path)
    types = {tensor.name: tensor.tensor_type for tensor in reader.tensors}
    assert "output.weight" not in types  # tied to token_embd
    assert types["token_embd.weight"] == GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert types["output_norm.weight"] == GGMLQuantizationType.F32
    assert reader.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert reader.fields["tokenizer.ggml.eos_token_id"].contents() == 2
    assert not reader.fields["tokenizer.ggml.add_bos_token"].contents()
    assert len(reader.fields["tokenizer.ggml.merges"].contents()) > 40_000


def test_progress_once_per_tensor(exports: dict):
    for result, calls, _ in exports.values():
        total = result.tensor_count
        assert total == len(GGUFReader(result.path).tensors) == 272
        assert calls == [(done, total) for done in range(1, total + 1)]
    assert not list(result.path.parent.glob(".*tmp*"))


def test_bundled_model_is_supported(bundled_model: Path):
    assert gguf_unsupported(bundled_model) is None


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe"}, "Qwen2Moe"),
        ({"model_type": "llama"}, "names no architecture"),
        (
            {
                "architectures": ["LlamaForCausalLM"],
                "quantization_config": {"quant_method": "gptq"},
            },
            "already quantized (gptq)",
        ),
        (
            {
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vocab_size": 100,
                "rope_scaling": {"type": "yarn", "factor": 4.0},
            },
            "RoPE scaling 'yarn'",
        ),
    ],
)
def test_unsupported_models_are_refused_before_writing(tmp_path: Path, config: dict, named: str):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    reason = gguf_unsupported(model_dir)
    assert reason is not None and named in reason
    out = tmp_path / "out" / "model.gguf"
    with pytest.raises(FailedPrecondition, match=named.split(" (")[0]):
        export_gguf(model_dir, out, GgufType.F16)
    assert not out.parent.exists()


def test_folder_without_config_is_refused(tmp_path: Path):
    assert "no config.json" in gguf_unsupported(tmp_path)


class Cancelled(Exception):
    """Raised by a progress callback to stop an export."""


def test_a_failing_progress_leaves_no_file(bundled_model: Path, tmp_path: Path):
    def cancel(done: int, total: int) -> None:
        if done == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        export_gguf(bundled_model, tmp_path / "model.gguf", GgufType.Q8_0, progress=cancel)
    assert list(tmp_path.iterdir()) == []


def tiny_llama(bundled_model: Path, folder: Path, **overrides):
    """A random 2-layer Llama with untied head and rows Q8_0 cannot split, saved in `folder`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=49152,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        **overrides,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(bundled_model / name, folder / name)
    return model


def test_f32_round_trip_is_exact_for_an_untied_model(bundled_model: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM

    model = tiny_llama(bundled_model, tmp_path / "tiny")
    result = export_gguf(tmp_path / "tiny", tmp_path / "out" / "tiny.gguf", GgufType.F32)
    names = {tensor.name for tensor in GGUFReader(result.path).tensors}
    assert "output.weight" in names
    loaded = AutoModelForCausalLM.from_pretrained(result.path.parent, gguf_file=result.path.name)
    assert not loaded.config.tie_word_embeddings
    ids = torch.tensor([[1, 504, 3575, 282, 4649, 314, 7042, 30, 2, 17, 99]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_q8_0_keeps_odd_rows_in_f16_and_writes_llama3_rope_factors(
    bundled_model: Path, tmp_path: Path
):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    model = tiny_llama(bundled_model, tmp_path / "tiny", rope_parameters=rope)
    result = export_gguf(tmp_path / "tiny", tmp_path / "tiny.gguf", GgufType.Q8_0)
    tensors = {tensor.name: tensor for tensor in GGUFReader(result.path).tensors}
    assert tensors["blk.0.attn_q.weight"].tensor_type == GGMLQuantizationType.F16  # 48 wide
    assert tensors["blk.0.ffn_down.weight"].tensor_type == GGMLQuantizationType.Q8_0  # 64 wide
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](model.config, None)
    head_dim = 48 // 4
    plain = 1.0 / (10000.0 ** (np.arange(0, head_dim, 2) / head_dim))
    np.testing.assert_allclose(tensors["rope_freqs.weight"].data, plain / scaled.numpy(), rtol=1e-5)


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}


@pytest.mark.parametrize(
    ("pre_tokenizer", "name"),
    [
        (BYTE_LEVEL, "gpt-2"),
        (
            {
                "type": "Sequence",
                "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL],
            },
            "smollm",
        ),
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {
                        "type": "Split",
                        "pattern": {"Regex": gguf_vocab.LLAMA3_SPLIT},
                        "behavior": "Isolated",
                        "invert": False,
                    },
                    dict(BYTE_LEVEL, use_regex=False),
                ],
            },
            "llama-bpe",
        ),
        ({"type": "Metaspace", "replacement": "▁"}, None),
        (dict(BYTE_LEVEL, add_prefix_space=True), None),
        (None, None),
    ],
)
def test_pre_tokenizer_names(pre_tokenizer: dict | None, name: str | None):
    assert gguf_vocab.pre_tokenizer_name(pre_tokenizer) == name


def test_sentencepiece_tokenizer_is_refused_before_writing(bundled_model: Path, tmp_path: Path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(bundled_model / "config.json", model_dir / "config.json")
    tokenizer = json.loads((bundled_model / "tokenizer.json").read_text())
    tokenizer["model"]["byte_fallback"] = True
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    out = tmp_path / "out" / "model.gguf"
    with pytest.raises(FailedPrecondition, match="SentencePiece-style BPE"):
        export_gguf(model_dir, out, GgufType.F16)
    assert not out.parent.exists()
