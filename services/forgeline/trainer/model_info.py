"""A base model's sizes, read from `config.json` and the safetensors headers alone.

No weight is loaded: the planner sizes a run from the shapes in each safetensors file's
JSON header and the architecture numbers in the config.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from forgeline.client import exceptions
from forgeline.trainer.targets import ALL_LINEAR


@dataclass(frozen=True)
class ModelInfo:
    """Sizes of a model read from `config.json` and the safetensors headers."""

    model_type: str
    num_params: int
    linear_params: int  # 2-D weights inside the transformer blocks (what LoRA/QLoRA touch)
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    max_positions: int
    weight_names: tuple[str, ...]
    # (module name, output features, input features) of every 2-D block weight.
    linear_shapes: tuple[tuple[str, int, int], ...] = ()
    tied_embeddings: bool = False

    def adapted(self, targets: tuple[str, ...]) -> list[tuple[int, int]]:
        """(out, in) features of every linear layer that `targets` selects."""
        everything = ALL_LINEAR in targets
        return [
            (rows, cols)
            for module, rows, cols in self.linear_shapes
            if everything or module.rsplit(".", 1)[-1] in targets
        ]

    def lora_params(self, rank: int, targets: tuple[str, ...]) -> int:
        """Trainable parameters of rank-`rank` adapters on `targets`."""
        return sum(rank * (rows + cols) for rows, cols in self.adapted(targets))


def is_head_module(module: str) -> bool:
    """Whether a module is the embedding or the output head (not a block's linear layer)."""
    return module.endswith("lm_head") or "embed" in module


def read_model_info(folder: Path) -> ModelInfo:
    """Reads a Hugging Face model folder's config and weight headers.

    Raises:
        FailedPrecondition: the folder has no config.json or no safetensors weights.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise exceptions.FailedPrecondition(f"{folder.name} has no config.json; is it a model?")
    config = json.loads(config_path.read_text())
    text = config.get("text_config", config)
    shapes: dict[str, tuple[int, ...]] = {}
    num_params = 0
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise exceptions.FailedPrecondition(f"{folder.name} has no .safetensors weights")
    for file in files:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            shape = tuple(meta["shape"])
            shapes[name] = shape
            num_params += math.prod(shape)
    linear = tuple(
        (n.rsplit(".", 1)[0], s[0], s[1])
        for n, s in shapes.items()
        if len(s) == 2 and n.endswith(".weight") and not is_head_module(n.rsplit(".", 1)[0])
    )
    return ModelInfo(
        model_type=str(config.get("model_type", "")),
        num_params=num_params,
        linear_params=sum(rows * cols for _, rows, cols in linear),
        hidden_size=int(text.get("hidden_size") or text.get("n_embd") or 0),
        intermediate_size=int(text.get("intermediate_size") or 4 * (text.get("hidden_size") or 0)),
        num_layers=int(text.get("num_hidden_layers") or text.get("n_layer") or 0),
        num_heads=int(text.get("num_attention_heads") or text.get("n_head") or 0),
        vocab_size=int(text.get("vocab_size") or 0),
        max_positions=int(
            text.get("max_position_embeddings")
            or text.get("n_positions")
            or text.get("seq_length")
            or 0
        ),
        weight_names=tuple(shapes),
        linear_shapes=linear,
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )
