"""Training throughput and memory: Forgeline's SFT recipe against plain HF Trainer + peft.

Same model (the bundled SmolLM2-135M-Instruct), same tokenized data (conversations of
mixed lengths, loss on the answers), same LoRA adapters, batch size, learning rate and
number of steps, in one run. Each variant runs in a fresh process so its peak RSS is its
own; tokens/s counts real (non-padding) tokens over the timed training loop. Also the
peak memory of LoRA vs QLoRA (NF4) vs full tuning with the planner's estimate beside it.

Run: .venv/bin/python bench/training.py [--steps 12]
Writes bench/results/training.json and bench/results/training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).parent / "results"
BATCH = 4
MAX_LEN = 256
LR = 2e-4
RANK = 16
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
]


def write_dataset(path: Path, n: int = 96, seed: int = 0) -> Path:
    """Conversations whose answers run from a few words to ~180, as real SFT data does."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            length = rng.choice([4, 8, 16, 32, 64, 120, 180])
            answer = " ".join(rng.choice(WORDS) for _ in range(length))
            question = f"Question {i}: list some words, please."
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": question},
                            {"role": "assistant", "content": answer},
                        ]
                    }
                )
                + "\n"
            )
    return path


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _config(tuner: str, packing: bool, steps: int):
    from forgeline.trainer.config import (
        HyperSettings,
        LoraSettings,
        OptimizerKind,
        QuantSettings,
        Scheduler,
        Task,
        TrainConfig,
        Tuner,
    )
    from forgeline.trainer.targets import default_targets

    t = Tuner(tuner)
    return TrainConfig(
        task=Task.SFT,
        tuner=t,
        lora=LoraSettings(rank=RANK, alpha=2 * RANK, target_modules=default_targets("llama")),
        quant=QuantSettings() if t is Tuner.QLORA else None,
        hyper=HyperSettings(
            max_steps=steps,
            learning_rate=LR if t.adapter else 2e-5,
            batch_size=BATCH,
            max_seq_length=MAX_LEN,
            packing=packing,
            scheduler=Scheduler.LINEAR,
            optimizer=OptimizerKind.PAGED_ADAMW_32BIT if t is Tuner.QLORA else OptimizerKind.ADAMW,
        ),
    )


def child_ours(dataset: Path, tuner: str, packing: bool, steps: int) -> dict:
    """Forgeline's SFT recipe in this process (the loop Ray workers run)."""
    from forgeline.common.bundled import import_bundled
    from forgeline.trainer.recipes.sft import SFTRecipe
    from forgeline.trainer.worker import Inputs, LocalEnv

    cfg = _config(tuner, packing, steps)
    with tempfile.TemporaryDirectory() as tmp:
        env = LocalEnv(Inputs(base=import_bundled(), dataset=dataset), Path(tmp))
        recipe = SFTRecipe(cfg, env)
        recipe.setup()
        start = time.perf_counter()
        recipe.train()
        elapsed = time.perf_counter() - start
        tokens = recipe.state.tokens
        losses = [metrics["loss"] for _, _, metrics in env.reports]
        recipe.cleanup()
    return {
        "tokens": tokens,
        "seconds": elapsed,
        "mean_loss": sum(losses) / len(losses),
        "peak_rss": _peak_rss(),
    }


def child_hf(dataset: Path, steps: int) -> dict:
    """The anchor: transformers.Trainer + peft on the same tokenized examples."""
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
    items = data_mod.tokenize_dataset(tokenizer, examples, MAX_LEN)
    rows = [{"input_ids": t.input_ids, "labels": t.labels} for t in items]
    seen = {"tokens": 0}

    def collate(batch):
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
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
            r=RANK,
            lora_alpha=2 * RANK,
            target_modules=list(default_targets("llama")),
            task_type="CAUSAL_LM",
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=BATCH,
            max_steps=steps,
            learning_rate=LR,
            lr_scheduler_type="linear",
            logging_steps=steps,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            seed=42,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
        start = time.perf_counter()
        out = trainer.train()
        elapsed = time.perf_counter() - start
    return {
        "tokens": seen["tokens"],
        "seconds": elapsed,
        "mean_loss": out.training_loss,
        "peak_rss": _peak_rss(),
    }


def estimate(tuner: str) -> int:
    """The planner's per-worker memory estimate for a variant."""
    from forgeline.common.bundled import import_bundled
    from forgeline.trainer.config import Strategy
    from forgeline.trainer.plan import estimate_memory, read_model_info

    info = read_model_info(import_bundled())
    cfg = _config(tuner, False, 1)
    return estimate_memory(info, cfg, Strategy.NONE, 0, BATCH * MAX_LEN).total


def run_child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child is not None:
        kind, dataset, *rest = args.child
        if kind == "hf":
            result = child_hf(Path(dataset), int(rest[0]))
        else:
            result = child_ours(Path(dataset), rest[0], rest[1] == "pack", int(rest[2]))
        print(json.dumps(result))
        return

    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp) / "mixed.jsonl")
        steps = str(args.steps)
        runs = {
            "hf_trainer_peft": run_child(["hf", str(dataset), steps]),
            "forgeline_sft": run_child(["ours", str(dataset), "lora", "nopack", steps]),
            "forgeline_sft_packing": run_child(["ours", str(dataset), "lora", "pack", steps]),
        }
        memory = {}
        for tuner in ("lora", "qlora", "full"):
            r = run_child(["ours", str(dataset), tuner, "nopack", str(args.memory_steps)])
            memory[tuner] = {"peak_rss": r["peak_rss"], "estimate_bytes": estimate(tuner)}
    for r in runs.values():
        r["tokens_per_second"] = r["tokens"] / r["seconds"]
    anchor = runs["hf_trainer_peft"]["tokens_per_second"]
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "setup": {
            "model": "SmolLM2-135M-Instruct",
            "lora_rank": RANK,
            "batch": BATCH,
            "max_seq_len": MAX_LEN,
            "steps": args.steps,
            "examples": 96,
        },
        "throughput": runs,
        "ratios": {
            "forgeline_vs_anchor": runs["forgeline_sft"]["tokens_per_second"] / anchor,
            "forgeline_packing_vs_anchor": runs["forgeline_sft_packing"]["tokens_per_second"]
            / anchor,
        },
        "targets": {"forgeline_vs_anchor": 1.0, "forgeline_packing_vs_anchor": 1.3},
        "memory": memory,
    }
    (RESULTS / "training.json").write_text(json.dumps(results, indent=2))
    mib = 1024 * 1024
    lines = [
        "# Training: Forgeline SFT vs HF Trainer + peft",
        "",
        f"SmolLM2-135M-Instruct, LoRA r={RANK} on attention + MLP, batch {BATCH}, "
        f"max {MAX_LEN} tokens, {args.steps} steps, 96 conversations of mixed length, "
        f"{os.cpu_count()} CPU cores, one process per row.",
        "",
        "| run | tokens/s | ratio to anchor | target | mean loss over the run | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for name, target in (
        ("hf_trainer_peft", "anchor"),
        ("forgeline_sft", ">= 1.0x"),
        ("forgeline_sft_packing", ">= 1.3x"),
    ):
        r = runs[name]
        lines.append(
            f"| {name} | {r['tokens_per_second']:.0f} | {r['tokens_per_second'] / anchor:.2f}x "
            f"| {target} | {r['mean_loss']:.3f} | {r['peak_rss'] / mib:.0f} MiB |"
        )
    lines += [
        "",
        "Peak RSS of a whole process (it includes ~0.4 GiB of imported runtime and the "
        "model load); the planner estimates the training state only.",
        "",
        "| tuner | peak RSS | planner estimate (training state) |",
        "|---|---|---|",
    ]
    for tuner, m in memory.items():
        lines.append(
            f"| {tuner} | {m['peak_rss'] / mib:.0f} MiB | {m['estimate_bytes'] / mib:.0f} MiB |"
        )
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
