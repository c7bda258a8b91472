"""Evaluation accuracy and speed: Forgeline's evaluator service against lm-evaluation-harness.

Same model (the bundled SmolLM2-135M-Instruct), same MMLU subjects, same k-shot examples
and the same test questions, in one run:

- Forgeline: a registry and an evaluator started as processes; for each subject one job
  submitted through the SDK (the questions uploaded as a DATASET version), timed from
  submission to the finished report, the per-item decisions read back from the registry.
- The anchor: lm-evaluation-harness 0.4.13, hf backend, offline, with a local task YAML over
  the same CSVs (its `mmlu` template), in this process with its default settings.

Prints both accuracies, the decisions that differ and both wall times per subject.
Targets: accuracy within 0.5 points on every subject, wall time <= 0.25x of lm-eval's.

Run: .venv/bin/python bench/evaluation.py [--subjects a,b] [--limit N] [--shots 5]
Writes bench/results/evaluation.json and bench/results/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forgeline.client import ChannelOptions, EvaluatorClient, RegistryClient  # noqa: E402
from forgeline.client.cache import VersionCache  # noqa: E402
from forgeline.client.refs import format_ref, parse_ref  # noqa: E402
from forgeline.client.transfer import push_folder  # noqa: E402
from forgeline.common.bundled import import_bundled  # noqa: E402
from forgeline.common.processes import start_service  # noqa: E402
from forgeline.v1 import common_pb2, registry_pb2  # noqa: E402
from forgeline.v1 import evaluator_pb2 as e  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MMLU = Path("/work/shared/data/mmlu")
BATCH = 8


def forgeline_runs(model: Path, work: Path, subjects: list[str], shots: int, limit: int) -> dict:
    """Per subject: accuracy, decisions and seconds through the running services."""
    home = work / "home"
    env = {**os.environ, "FORGELINE_HOME": str(home), "FORGELINE_CACHE_DIR": str(work / "cache")}
    registry_proc = start_service("registry", env, work / "registry.log")
    env["FORGELINE_REGISTRY_ADDRESS"] = registry_proc.address
    evaluator_proc = start_service("evaluator", env, work / "evaluator.log")
    options = ChannelOptions()
    out = {}
    try:
        with RegistryClient(registry_proc.address, options) as registry:
            push_folder(registry, model, "smol", registry_pb2.VERSION_KIND_BASE)
            data = work / "mmlu"
            for split in ("dev", "test"):
                (data / split).mkdir(parents=True)
                for subject in subjects:
                    shutil.copy(MMLU / split / f"{subject}_{split}.csv", data / split)
            dataset = push_folder(registry, data, "mmlu-bench", registry_pb2.VERSION_KIND_DATASET)
            cache = VersionCache(registry, work / "pulled")
            with EvaluatorClient(evaluator_proc.address, options) as evaluator:
                # A running service has joined Ray already: let it do so before timing.
                warm = e.EvalJobSpec(
                    target=e.EvalTarget(version=parse_ref("smol:1")),
                    suites=[_mmlu_suite(dataset, subjects[0], 0, 1)],
                )
                evaluator.wait(evaluator.submit(warm).id)
                for subject in subjects:
                    spec = e.EvalJobSpec(
                        target=e.EvalTarget(version=parse_ref("smol:1")),
                        batch_size=BATCH,
                        suites=[_mmlu_suite(dataset, subject, shots, limit)],
                    )
                    started = time.perf_counter()
                    job = evaluator.submit(spec)
                    final = evaluator.wait(job.id)
                    seconds = time.perf_counter() - started
                    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
                    (result,) = evaluator.report(job.id).results
                    rows = (cache.pull(format_ref(result.items)).path / "mmlu.jsonl").read_text()
                    out[subject] = {
                        "accuracy": result.metrics["accuracy"],
                        "decisions": [json.loads(r)["prediction"] for r in rows.splitlines()],
                        "seconds": seconds,
                    }
    finally:
        evaluator_proc.stop()
        registry_proc.stop()
    return out


def _mmlu_suite(dataset, subject: str, shots: int, limit: int) -> e.EvalSuite:
    return e.EvalSuite(
        name="mmlu",
        multiple_choice=e.MultipleChoiceSuite(
            format=e.MULTIPLE_CHOICE_FORMAT_MMLU,
            dataset=parse_ref(f"{dataset.model}:{dataset.number}"),
            subjects=[subject],
            num_few_shot=shots,
            limit_per_subject=limit,
        ),
    )


def lm_eval_runs(model: Path, work: Path, subjects: list[str], shots: int, limit: int) -> dict:
    """Per subject: lm-eval's accuracy, decisions and seconds (hf backend)."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tasks = work / "tasks"
    tasks.mkdir()
    for subject in subjects:
        config = {
            "task": f"bench_mmlu_{subject}",
            "dataset_path": "csv",
            "dataset_kwargs": {
                "data_files": {
                    "test": str(MMLU / "test" / f"{subject}_test.csv"),
                    "dev": str(MMLU / "dev" / f"{subject}_dev.csv"),
                },
                "column_names": ["question", "A", "B", "C", "D", "answer"],
                "keep_default_na": False,
                "cache_dir": str(work / "hf-cache"),
            },
            "test_split": "test",
            "fewshot_split": "dev",
            "fewshot_config": {"sampler": "first_n"},
            "output_type": "multiple_choice",
            "description": "The following are multiple choice questions (with answers) about "
            f"{subject.replace('_', ' ')}.\n\n",
            "doc_to_text": "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:",
            "doc_to_choice": ["A", "B", "C", "D"],
            "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer)}}",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
        (tasks / f"{config['task']}.yaml").write_text(json.dumps(config))
    manager = TaskManager(include_path=str(tasks))
    out = {}
    for subject in subjects:
        task = f"bench_mmlu_{subject}"
        started = time.perf_counter()
        harness = HFLM(pretrained=str(model), dtype="float32", batch_size=BATCH, device="cpu")
        result = simple_evaluate(
            model=harness,
            tasks=[task],
            num_fewshot=shots,
            limit=limit or None,
            task_manager=manager,
            bootstrap_iters=0,
            log_samples=True,
        )
        seconds = time.perf_counter() - started
        samples = sorted(result["samples"][task], key=lambda s: s["doc_id"])
        decisions = [
            "ABCD"[max(range(4), key=lambda i, s=s: float(s["filtered_resps"][i][0]))]
            for s in samples
        ]
        out[subject] = {
            "accuracy": result["results"][task]["acc,none"],
            "decisions": decisions,
            "seconds": seconds,
        }
        del harness
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", default="abstract_algebra,high_school_geography")
    parser.add_argument("--limit", type=int, default=0, help="Questions per subject; 0: all.")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    subjects = args.subjects.split(",")
    model = import_bundled()
    work = Path(tempfile.mkdtemp(prefix="forgeline-bench-eval-"))
    try:
        ours = forgeline_runs(model, work, subjects, args.shots, args.limit)
        theirs = lm_eval_runs(model, work, subjects, args.shots, args.limit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for subject in subjects:
        a, b = ours[subject], theirs[subject]
        rows.append(
            {
                "subject": subject,
                "items": len(a["decisions"]),
                "forgeline_accuracy": a["accuracy"],
                "lm_eval_accuracy": b["accuracy"],
                "accuracy_points_apart": round(100 * abs(a["accuracy"] - b["accuracy"]), 2),
                "decisions_differing": sum(
                    x != y for x, y in zip(a["decisions"], b["decisions"], strict=True)
                ),
                "forgeline_seconds": round(a["seconds"], 1),
                "lm_eval_seconds": round(b["seconds"], 1),
                "time_ratio": round(a["seconds"] / b["seconds"], 3),
            }
        )
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "shots": args.shots,
        "rows": rows,
        "targets": {"accuracy_points_apart": "<= 0.5", "time_ratio": "<= 0.25"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Evaluation: Forgeline's evaluator vs lm-evaluation-harness ({args.shots}-shot MMLU)",
        "",
        "| subject | items | Forgeline acc | lm-eval acc | points apart | decisions differing "
        "| Forgeline s | lm-eval s | time ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['subject']} | {r['items']} | {r['forgeline_accuracy']:.4f} "
            f"| {r['lm_eval_accuracy']:.4f} | {r['accuracy_points_apart']} "
            f"| {r['decisions_differing']} | {r['forgeline_seconds']} | {r['lm_eval_seconds']} "
            f"| {r['time_ratio']}x |"
        )
    lines += ["", "Targets: accuracy within 0.5 points on every subject; time ratio <= 0.25x."]
    (args.out / "evaluation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
