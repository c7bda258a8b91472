"""The anchor of the training benchmarks: a plain transformers.Trainer + peft LoRA run.

What a user's own script does on the same data: the examples tokenized as Forgeline
tokenizes them (loss on the answers), padded per batch with an attention mask, fp32
weights, LoRA on every linear layer, the Trainer's defaults otherwise.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class AnchorRun:
    """A finished anchor run: the trained model, its tokenizer and what it measured."""

    model: Any
    tokenizer: Any
    tokens: int
    seconds: float
    losses: list[float]


def train_hf_peft(
    dataset: Path,
    *,
    rank: int,
    batch: int,
    steps: int,
    lr: float,
    max_len: int,
    bf16: bool = False,
    save: bool = False,
) -> AnchorRun:
    """Trains the bundled SmolLM2 on `dataset` (SFT chats); `save` writes the adapter too."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from forgeline.common.bundled import import_bundled
    from forgeline.trainer import data as data_mod
    from forgeline.trainer.config import Task
    from forgeline.trainer.modeling import load_tokenizer
    from forgeline.trainer.targets import default_targets

    base = import_bundled()
    tokenizer = load_tokenizer(base)
    examples = data_mod.load_dataset(dataset, Task.SFT).examples
    items = data_mod.tokenize_dataset(tokenizer, examples, max_len)
    rows = [{"input_ids": t.input_ids, "labels": t.labels} for t in items]
    seen = {"tokens": 0}

    def collate(rows_of_batch):
        width = max(len(r["input_ids"]) for r in rows_of_batch)
        ids = torch.full((len(rows_of_batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows_of_batch), width), -100)
        mask = torch.zeros((len(rows_of_batch), width), dtype=torch.long)
        for i, r in enumerate(rows_of_batch):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        seen["tokens"] += int(mask.sum())
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.float32, attn_implementation="sdpa"
    )
    model = get_peft_model(
        model,
        LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            target_modules=list(default_targets("llama")),
            task_type="CAUSAL_LM",
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=lr,
            lr_scheduler_type="linear",
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            bf16=bf16,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            seed=42,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        if save:
            trainer.save_model(str(Path(tmp) / "adapter"))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return AnchorRun(model, tokenizer, seen["tokens"], seconds, losses)
