"""Loading a model for training: precision, bitsandbytes quantization, PEFT adapters.

`load_for_training` returns the model a recipe trains: the base in the training precision
(or quantized to 4/8 bits for QLoRA) with LoRA or DoRA adapters attached, or the whole
model for full tuning. `save_trained` writes the result in the format the rest of the
suite loads: a PEFT adapter folder, or a full Hugging Face model folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from forgeline.trainer.config import Precision, QuantType, Strategy, TrainConfig, Tuner
from forgeline.trainer.targets import ALL_LINEAR

log = logging.getLogger(__name__)

DTYPES = {
    Precision.FP32: torch.float32,
    Precision.BF16: torch.bfloat16,
    Precision.FP16: torch.float16,
}


def torch_dtype(precision: Precision) -> torch.dtype:
    """The torch dtype of a precision."""
    return DTYPES[precision]


def load_tokenizer(folder: Path) -> Any:
    """Loads a tokenizer, giving it a padding token when it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_training(
    base_dir: Path, cfg: TrainConfig, *, device: torch.device, adapter: Path | None = None
) -> Any:
    """Loads the base model and prepares it for the configured tuner.

    Args:
        base_dir: A Hugging Face model folder.
        cfg: The job's configuration.
        device: Where the model trains.
        adapter: A PEFT adapter folder of this base to continue training (its own shape
            is kept; the plan wrote it into `cfg`).

    Returns:
        A `PeftModel` for adapter tuners, else the `PreTrainedModel` itself.
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"attn_implementation": "sdpa"}
    if cfg.tuner is Tuner.QLORA and cfg.quant is not None:
        compute = torch_dtype(cfg.quant.compute_dtype)
        if cfg.quant.bits == 4:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=cfg.quant.quant_type.value,
                bnb_4bit_use_double_quant=cfg.quant.double_quant,
                bnb_4bit_compute_dtype=compute,
                # Under FSDP the packed 4-bit weights are stored in the dtype of the other
                # weights, so that FSDP shards them like any other parameter.
                bnb_4bit_quant_storage=compute if cfg.dist.strategy is Strategy.FSDP else None,
            )
        else:
            assert cfg.quant.quant_type is QuantType.INT8
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["dtype"] = compute
        kwargs["device_map"] = {"": device}
    elif cfg.tuner is Tuner.FULL:
        # Full tuning keeps fp32 master weights; bf16 comes from autocast (or DeepSpeed).
        kwargs["dtype"] = torch.float32
    else:
        kwargs["dtype"] = torch_dtype(cfg.hyper.precision)
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    model.config.use_cache = False
    if cfg.tuner is not Tuner.QLORA:
        model.to(device)
    if cfg.tuner is Tuner.QLORA:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.hyper.gradient_checkpointing
        )
    elif cfg.hyper.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.tuner is Tuner.FULL:
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
        if cfg.hyper.gradient_checkpointing:
            model.enable_input_require_grads()
        return model

    targets = list(cfg.lora.target_modules) or ALL_LINEAR
    if targets == [ALL_LINEAR]:
        targets = ALL_LINEAR
    peft_config = LoraConfig(
        r=cfg.lora.rank,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        modules_to_save=list(cfg.lora.modules_to_save) or None,
        use_dora=cfg.tuner is Tuner.DORA,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, peft_config)
    if cfg.hyper.gradient_checkpointing:
        # Frozen embeddings produce no grad; checkpointed blocks need inputs that do.
        model.enable_input_require_grads()
    return model


def load_frozen(
    base_dir: Path, *, dtype: torch.dtype, device: torch.device, adapter: Path | None = None
) -> Any:
    """A model for scoring only (a DPO reference): `base_dir`, with `adapter` merged in."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, attn_implementation="sdpa")
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.to(device).eval().requires_grad_(False)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (what a resumable checkpoint must hold)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copies saved trainable parameters back into a freshly built model.

    Raises:
        KeyError: a saved parameter does not exist in the model (another configuration).
    """
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def save_trained(model: Any, tokenizer: Any, dest: Path, state_dict: dict | None = None) -> None:
    """Writes an adapter (PEFT folder) or a full model (safetensors) plus the tokenizer.

    Args:
        model: The trained model, unwrapped from DDP / DeepSpeed.
        tokenizer: Saved beside it so the folder is self-contained.
        dest: Target folder.
        state_dict: Weights to write instead of the model's own (gathered ZeRO-3 shards).
    """
    dest.mkdir(parents=True, exist_ok=True)
    if state_dict is not None:
        model.save_pretrained(dest, state_dict=state_dict, safe_serialization=True)
    else:
        model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
