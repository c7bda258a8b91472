"""The chunked LM loss against the plain one (full logits): memory and time of a step.

Same model (the bundled SmolLM2-135M-Instruct, fp32, LoRA r=16 on attention + MLP), same
batch of 4 x 256 tokens with every position a target (the least favourable case for the
chunked loss, which skips ignored positions), same optimizer. Each variant runs in a fresh
process and reports: the bytes autograd keeps for backward in one forward (distinct
tensors, weights aside), the process's peak RSS and its rise above the loaded model, and
the mean wall time of an optimizer step (forward, backward, AdamW) after one untimed step.

Run: .venv/bin/python bench/lm_loss.py [--steps 4]
Writes bench/results/lm_loss.json and bench/results/lm_loss.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).parent / "results"
BATCH = 4
SEQ = 256
RANK = 16


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(mode: str, steps: int) -> dict:
    """One variant in this process: `plain` (full logits) or `chunked` (`LogProbHead`)."""
    import torch

    from forgeline.common.bundled import import_bundled
    from forgeline.trainer.config import HyperSettings, LoraSettings, Task, TrainConfig
    from forgeline.trainer.modeling import load_for_training
    from forgeline.trainer.recipes.lm_loss import install_logprob_head, next_token_logps
    from forgeline.trainer.targets import default_targets

    cfg = TrainConfig(
        task=Task.SFT,
        lora=LoraSettings(rank=RANK, alpha=2 * RANK, target_modules=default_targets("llama")),
        hyper=HyperSettings(batch_size=BATCH, max_seq_length=SEQ),
    )
    torch.manual_seed(0)
    model = load_for_training(import_bundled(), cfg, device=torch.device("cpu"))
    if mode == "chunked" and not install_logprob_head(model):
        raise RuntimeError("the bundled model's head could not be replaced")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (BATCH, SEQ), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    targets = BATCH * (SEQ - 1)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    def step() -> float:
        loss = -next_token_logps(model, inputs, ids).sum() / targets
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    baseline = _peak_rss()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        first_loss = step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {
        "saved_bytes": sum(saved.values()),
        "peak_rss": _peak_rss(),
        "baseline_rss": baseline,
        "seconds_per_step": seconds,
        "first_loss": first_loss,
    }


def run_child(mode: str, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--steps", str(steps)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--child", choices=["plain", "chunked"])
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.steps)))
        return

    runs = {mode: run_child(mode, args.steps) for mode in ("plain", "chunked")}
    plain, chunked = runs["plain"], runs["chunked"]
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "setup": {
            "model": "SmolLM2-135M-Instruct",
            "lora_rank": RANK,
            "batch": BATCH,
            "seq_len": SEQ,
            "timed_steps": args.steps,
        },
        "runs": runs,
        "ratios": {
            "saved_bytes": chunked["saved_bytes"] / plain["saved_bytes"],
            "rss_rise": (chunked["peak_rss"] - chunked["baseline_rss"])
            / (plain["peak_rss"] - plain["baseline_rss"]),
            "seconds_per_step": chunked["seconds_per_step"] / plain["seconds_per_step"],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lm_loss.json").write_text(json.dumps(results, indent=2))
    mib = 1024 * 1024
    lines = [
        "# Chunked LM loss vs plain loss (full logits)",
        "",
        f"SmolLM2-135M-Instruct fp32, LoRA r={RANK} on attention + MLP, batch {BATCH} x {SEQ} "
        f"tokens (all targets), AdamW, {os.cpu_count()} CPU cores, one process per row, "
        f"mean of {args.steps} steps after one untimed step.",
        "",
        "| loss | saved for backward | peak RSS | rise above loaded model | s / step | "
        "first loss |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in runs.items():
        lines.append(
            f"| {mode} | {r['saved_bytes'] / mib:.0f} MiB | {r['peak_rss'] / mib:.0f} MiB "
            f"| {(r['peak_rss'] - r['baseline_rss']) / mib:.0f} MiB "
            f"| {r['seconds_per_step']:.2f} | {r['first_loss']:.4f} |"
        )
    (RESULTS / "lm_loss.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
