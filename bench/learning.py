"""Learning quality of short runs: which learning-rate schedule teaches invented facts.

24 invented facts, one chat each; LoRA r64 on every linear layer, batch 4, 48 steps, peak
lr 2e-4, Forgeline's SFT recipe (in this process, as its workers run it) with each
schedule, and a plain peft loop (transformers.Trainer, linear decay, the same settings) as
the anchor. Each adapter is asked the 24 training questions and 24 paraphrases of them
(greedy, 32 new tokens); an answer counts when it contains the fact's key word.

Run: .venv/bin/python bench/learning.py [--schedules linear constant ...]
Writes bench/results/learning.json and bench/results/learning.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forgeline.cli.demo.data import atlas_facts

RESULTS = Path(__file__).parent / "results"
RANK, BATCH, STEPS, LR, MAX_LEN = 64, 4, 48, 2e-4, 256

# Each fact: its training question and answer, the key word an answer must contain, and a
# paraphrase of the question that the training data never shows.
FACTS = atlas_facts()


def write_facts(path: Path) -> Path:
    """The training chats: each fact asked once, in its training wording."""
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in ((f["question"], f["answer"]) for f in FACTS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score(model, tokenizer) -> dict:
    """Key words found in answers to the training questions and to the paraphrases."""
    import torch

    def asks(question: str) -> str:
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
        return tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    model.eval()
    trained = sum(f["key"].lower() in asks(f["question"]).lower() for f in FACTS)
    paraphrased = sum(f["key"].lower() in asks(f["paraphrase"]).lower() for f in FACTS)
    return {"trained": trained, "paraphrased": paraphrased}


def child_ours(dataset: Path, schedule: str, warmup_ratio: float) -> dict:
    """Forgeline's SFT recipe (its defaults apart from the schedule) in this process."""
    from dataclasses import replace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forgeline.common.bundled import import_bundled
    from forgeline.trainer.config import TrainConfig
    from forgeline.trainer.config.defaults import cpu_has_bf16, fill_defaults
    from forgeline.trainer.recipes.sft import SFTRecipe
    from forgeline.trainer.targets import default_targets
    from forgeline.trainer.worker import Inputs, LocalEnv
    from forgeline.v1 import trainer_pb2 as pb

    spec = pb.TrainJobSpec(
        task=pb.TRAIN_TASK_SFT,
        lora=pb.LoraConfig(rank=RANK, alpha=2 * RANK),
        hyper_parameters=pb.HyperParameters(
            max_steps=STEPS,
            learning_rate=LR,
            per_device_batch_size=BATCH,
            max_seq_length=MAX_LEN,
            warmup_ratio=warmup_ratio,
        ),
    )
    if schedule != "default":
        spec.hyper_parameters.lr_scheduler = pb.LrScheduler.Value(
            f"LR_SCHEDULER_{schedule.upper()}"
        )
    cfg = TrainConfig.from_pb(fill_defaults(spec, cpu_bf16=cpu_has_bf16()))
    cfg = replace(cfg, lora=replace(cfg.lora, target_modules=default_targets("llama")))
    base = import_bundled()
    with tempfile.TemporaryDirectory() as tmp:
        env = LocalEnv(Inputs(base=base, dataset=dataset), Path(tmp) / "ck")
        recipe = SFTRecipe(cfg, env)
        recipe.setup()
        start = time.perf_counter()
        recipe.train()
        seconds = time.perf_counter() - start
        adapter = Path(tmp) / "adapter"
        recipe.engine.export(adapter, recipe.tokenizer)
        recipe.cleanup()
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
        result = score(model, AutoTokenizer.from_pretrained(base))
    losses = [m["loss"] for _, _, m in env.reports]
    return {**result, "final_loss": losses[-1], "seconds": seconds}


def child_plain(dataset: Path) -> dict:
    """The anchor (`hf_anchor.py`): transformers.Trainer + peft, linear decay, same settings."""
    from hf_anchor import train_hf_peft

    run = train_hf_peft(dataset, rank=RANK, batch=BATCH, steps=STEPS, lr=LR, max_len=MAX_LEN)
    return {**score(run.model, run.tokenizer), "final_loss": run.losses[-1], "seconds": run.seconds}


def run_child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", nargs="*", default=["default", "linear", "constant"])
    parser.add_argument("--warmup-ratio", type=float, default=0.0)
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child is not None:
        kind, dataset, *rest = args.child
        if kind == "plain":
            result = child_plain(Path(dataset))
        else:
            result = child_ours(Path(dataset), rest[0], float(rest[1]))
        print(json.dumps(result))
        return
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_facts(Path(tmp) / "facts.jsonl")
        runs = {"plain_peft_linear": run_child(["plain", str(dataset)])}
        for schedule in args.schedules:
            runs[f"forgeline_{schedule}"] = run_child(
                ["ours", str(dataset), schedule, str(args.warmup_ratio)]
            )
            print(schedule, runs[f"forgeline_{schedule}"], flush=True)
    (RESULTS / "learning.json").write_text(json.dumps(runs, indent=2))
    lines = [
        "# Learning quality: invented facts, short run",
        "",
        f"24 invented facts, one chat each; LoRA r{RANK} on every linear layer, batch {BATCH}, "
        f"{STEPS} steps, peak lr {LR}, {os.cpu_count()} CPU cores. Forgeline rows use its "
        "defaults (packing, precision) with the schedule named; the anchor is "
        "transformers.Trainer + peft with linear decay.",
        "",
        "| run | training questions | paraphrases | final loss | train seconds |",
        "|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {r['trained']}/24 | {r['paraphrased']}/24 | {r['final_loss']:.3f} "
            f"| {r['seconds']:.0f} |"
        )
    (RESULTS / "learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
