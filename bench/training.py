"""Training throughput and memory: Forgeline against plain HF Trainer + peft.

Same model (the bundled SmolLM2-135M-Instruct), same data (conversations of mixed lengths,
loss on the answers), same LoRA adapters, batch size, learning rate and number of steps.
The first table is the user's path: a job through running registry and trainer services
(`training_service.py`), timed from submission to the registered version, beside an HF
Trainer script's whole process, both in the default environment. The second times the
training loop alone, in one process; the third gives the peak memory of LoRA vs QLoRA
(NF4) vs full tuning with the planner's estimate beside it. Every variant runs in a fresh
process so its peak RSS is its own; tokens are real (non-padding) tokens.

Run: .venv/bin/python bench/training.py [--steps 24]
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


def child_hf(dataset: Path, steps: int, bf16: bool) -> dict:
    """The anchor (`hf_anchor.py`), the adapter saved at the end as a user's script would."""
    from hf_anchor import train_hf_peft

    run = train_hf_peft(
        dataset, rank=RANK, batch=BATCH, steps=steps, lr=LR, max_len=MAX_LEN, bf16=bf16,
        save=True,
    )  # fmt: skip
    return {
        "tokens": run.tokens,
        "seconds": run.seconds,
        "mean_loss": sum(run.losses) / len(run.losses),
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
    """Runs a variant in a fresh process in the default environment; adds its wall time."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def service_rows(dataset: Path, steps: int) -> dict:
    """The user's path: jobs through running services, defaults and today's fp32 unpacked."""
    from training_service import Recipe, run_jobs, spec_for

    from forgeline.v1 import trainer_pb2

    recipe = Recipe(rank=RANK, batch=BATCH, max_len=MAX_LEN, steps=steps, lr=LR)
    with tempfile.TemporaryDirectory(prefix="fl-bench-") as work:
        rows = run_jobs(
            dataset,
            Path(work),
            {
                "forgeline_service": spec_for(recipe, "bench-default"),
                "forgeline_service_fp32_unpacked": spec_for(
                    recipe,
                    "bench-fp32",
                    packing=False,
                    precision=trainer_pb2.PRECISION_FP32,
                ),
            },
        )
    for row in rows.values():
        row["wall_seconds"] = row.pop("seconds")
    return rows


def _rate(row: dict) -> float:
    return row["tokens"] / row["wall_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child is not None:
        kind, dataset, *rest = args.child
        if kind == "hf":
            result = child_hf(Path(dataset), int(rest[0]), rest[1] == "bf16")
        else:
            result = child_ours(Path(dataset), rest[0], rest[1] == "pack", int(rest[2]))
        print(json.dumps(result))
        return

    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp) / "mixed.jsonl")
        steps = str(args.steps)
        user_path = {
            "hf_trainer_peft": run_child(["hf", str(dataset), steps, "fp32"]),
            "hf_trainer_peft_bf16": run_child(["hf", str(dataset), steps, "bf16"]),
            **service_rows(dataset, args.steps),
        }
        in_process = {
            "hf_trainer_peft": user_path["hf_trainer_peft"],
            "forgeline_sft": run_child(["ours", str(dataset), "lora", "nopack", steps]),
            "forgeline_sft_packing": run_child(["ours", str(dataset), "lora", "pack", steps]),
        }
        memory = {}
        for tuner in ("lora", "qlora", "full"):
            r = run_child(["ours", str(dataset), tuner, "nopack", str(args.memory_steps)])
            memory[tuner] = {"peak_rss": r["peak_rss"], "estimate_bytes": estimate(tuner)}
    anchor = user_path["hf_trainer_peft"]
    loop_anchor = anchor["tokens"] / anchor["seconds"]
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
        "user_path": user_path,
        "in_process": in_process,
        "ratios": {
            "service_tokens_per_second_vs_anchor": _rate(user_path["forgeline_service"])
            / _rate(anchor),
            "service_peak_rss_vs_anchor": user_path["forgeline_service"]["peak_rss"]
            / anchor["peak_rss"],
        },
        "targets": {
            "service_tokens_per_second_vs_anchor": ">= 1.3",
            "service_peak_rss_vs_anchor": "<= 0.7",
        },
        "memory": memory,
    }
    (RESULTS / "training.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "training.md").write_text(report(results, _rate(anchor), loop_anchor))
    print((RESULTS / "training.md").read_text())


def report(results: dict, anchor_rate: float, loop_anchor: float) -> str:
    """The markdown tables of a run."""
    mib = 1024 * 1024
    setup, user_path = results["setup"], results["user_path"]
    anchor_rss = user_path["hf_trainer_peft"]["peak_rss"]
    lines = [
        "# Training: Forgeline vs HF Trainer + peft",
        "",
        f"SmolLM2-135M-Instruct, LoRA r={RANK} on every linear layer, batch {BATCH}, "
        f"max {MAX_LEN} tokens, {setup['steps']} steps, lr {LR} linear, 96 conversations of "
        f"mixed length, {os.cpu_count()} CPU cores. Each row in a fresh process, default "
        "environment.",
        "",
        "## The user's path",
        "",
        "Forgeline: a job submitted through the SDK to running registry and trainer services, "
        "timed from submission to the registered version; tokens and the worker's peak RSS "
        "from the version's metrics. HF Trainer: a script's whole process (imports, model "
        "load, training, saving the adapter). Tokens are real (non-padding) tokens trained.",
        "",
        "| run | wall | tokens | tokens/s | ratio | peak RSS | ratio | final loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in user_path.items():
        rate = _rate(row)
        loss = row.get("final_loss", row.get("mean_loss"))
        lines.append(
            f"| {name} | {row['wall_seconds']:.1f} s | {row['tokens']} | {rate:.0f} "
            f"| {rate / anchor_rate:.2f}x | {row['peak_rss'] / mib:.0f} MiB "
            f"| {row['peak_rss'] / anchor_rss:.2f}x | {loss:.3f} |"
        )
    r = results["ratios"]
    lines += [
        "",
        f"Targets: service tokens/s >= 1.3x the anchor's (measured "
        f"{r['service_tokens_per_second_vs_anchor']:.2f}x), peak RSS <= 0.7x (measured "
        f"{r['service_peak_rss_vs_anchor']:.2f}x). The HF Trainer's final loss column is its "
        "mean over the run.",
        "",
        "## In one process (the training loop only)",
        "",
        "| run | tokens/s | ratio | mean loss over the run | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["in_process"].items():
        rate = row["tokens"] / row["seconds"]
        lines.append(
            f"| {name} | {rate:.0f} | {rate / loop_anchor:.2f}x | {row['mean_loss']:.3f} "
            f"| {row['peak_rss'] / mib:.0f} MiB |"
        )
    lines += [
        "",
        "## Peak memory by tuner",
        "",
        "Peak RSS of a whole process (it includes ~0.4 GiB of imported runtime and the "
        "model load); the planner estimates the training state only.",
        "",
        "| tuner | peak RSS | planner estimate (training state) |",
        "|---|---|---|",
    ]
    for tuner, m in results["memory"].items():
        lines.append(
            f"| {tuner} | {m['peak_rss'] / mib:.0f} MiB | {m['estimate_bytes'] / mib:.0f} MiB |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
