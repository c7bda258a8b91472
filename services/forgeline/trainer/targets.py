"""Default LoRA target modules per architecture family, and checks of explicit lists.

The defaults adapt the attention and MLP projections, which is what the QLoRA paper and
most recipes found to matter. `all-linear` (PEFT's shorthand) adapts every linear layer
except the output head. An explicit list always wins over the default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

ALL_LINEAR = "all-linear"

_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# `config.model_type` -> modules to adapt.
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    **{
        name: _LLAMA_LIKE
        for name in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "deepseek_v2",
            "yi",
            "internlm2",
            "olmo",
            "olmo2",
            "granite",
            "cohere",
            "starcoder2",
            "smollm3",
        )
    },
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "phi": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
    "chatglm": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "glm": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"),
    "glm4": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"),
    "baichuan": ("W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen": ("c_attn", "c_proj", "w1", "w2"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_bigcode": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "gptj": ("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"),
    "bloom": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "falcon": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    "mpt": ("Wqkv", "out_proj", "up_proj", "down_proj"),
}


def default_targets(model_type: str) -> tuple[str, ...]:
    """Modules to adapt for an architecture; `all-linear` for families not listed."""
    return DEFAULT_TARGETS.get(model_type.lower(), (ALL_LINEAR,))


def resolve_targets(model_type: str, requested: Sequence[str]) -> tuple[str, ...]:
    """The explicit list when given, else the architecture's default."""
    return tuple(requested) if requested else default_targets(model_type)


def missing_targets(targets: Iterable[str], module_names: Iterable[str]) -> list[str]:
    """Targets that match no module (by exact name or by `.`-separated suffix).

    Args:
        targets: Requested module names or suffixes, e.g. `q_proj`.
        module_names: Every module (or weight-derived module) name of the model, e.g.
            `model.layers.0.self_attn.q_proj`.
    """
    names = list(module_names)
    missing = []
    for target in targets:
        if target == ALL_LINEAR:
            continue
        if not any(n == target or n.endswith(f".{target}") for n in names):
            missing.append(target)
    return missing


def module_names_from_weights(weight_names: Iterable[str]) -> set[str]:
    """Module names implied by weight names (`a.b.q_proj.weight` -> `a.b.q_proj`)."""
    return {name.rsplit(".", 1)[0] for name in weight_names if "." in name}
