"""Side by side with lm-evaluation-harness 0.4.13 (hf backend, offline, local task YAML).

Same model, same 2 MMLU subjects x 20 test questions, 5-shot: the prompts must be identical
and every decision the same. The wall times of both are printed (run with `-s`); they are
reported, not asserted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from forgeline.evaluator.loglikelihood import LoglikelihoodScorer
from forgeline.evaluator.multiple_choice import MultipleChoiceSuite, run_multiple_choice
from forgeline.evaluator.multiple_choice_data import MultipleChoiceFormat

pytestmark = pytest.mark.e2e

SUBJECTS = ("abstract_algebra", "high_school_geography")
LIMIT = 20
SHOTS = 5
BATCH = 8


def _task(subject: str, mmlu_dir: Path, cache_dir: Path) -> dict:
    """lm-eval's `mmlu` default template over the hendrycks CSVs (YAML is a JSON superset)."""
    return {
        "task": f"forgeline_mmlu_{subject}",
        "dataset_path": "csv",
        "dataset_kwargs": {
            "data_files": {
                "test": str(mmlu_dir / "test" / f"{subject}_test.csv"),
                "dev": str(mmlu_dir / "dev" / f"{subject}_dev.csv"),
            },
            "column_names": ["question", "A", "B", "C", "D", "answer"],
            # Cells such as "None" stay text, as in the CSV.
            "keep_default_na": False,
            "cache_dir": str(cache_dir),
        },
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "description": (
            "The following are multiple choice questions (with answers) about "
            f"{subject.replace('_', ' ')}.\n\n"
        ),
        "doc_to_text": "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:",
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer)}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }


def test_same_prompts_and_decisions_as_lm_eval(
    bundled_model, loaded, mmlu_dir, tmp_path, monkeypatch
):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    for subject in SUBJECTS:
        config = _task(subject, mmlu_dir, tmp_path / "hf-cache")
        (tasks_dir / f"{config['task']}.yaml").write_text(json.dumps(config))
    manager = TaskManager(include_path=str(tasks_dir))
    harness = HFLM(pretrained=str(bundled_model), dtype="float32", batch_size=BATCH, device="cpu")
    scorer = LoglikelihoodScorer(loaded.model, loaded.tokenizer, batch_size=BATCH)

    report = []
    for subject in SUBJECTS:
        task = f"forgeline_mmlu_{subject}"
        started = time.monotonic()
        out = simple_evaluate(
            model=harness,
            tasks=[task],
            num_fewshot=SHOTS,
            limit=LIMIT,
            task_manager=manager,
            bootstrap_iters=0,
            log_samples=True,
        )
        theirs_s = time.monotonic() - started
        samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])

        suite = MultipleChoiceSuite(
            name="mmlu",
            folder=mmlu_dir,
            format=MultipleChoiceFormat.MMLU,
            subjects=(subject,),
            num_few_shot=SHOTS,
            limit_per_subject=LIMIT,
        )
        started = time.monotonic()
        ours = run_multiple_choice(scorer, suite)
        ours_s = time.monotonic() - started

        assert len(samples) == len(ours.items) == LIMIT
        differing, max_delta = 0, 0.0
        for sample, item in zip(samples, ours.items, strict=True):
            assert sample["arguments"][0][0] == item["prompt"]
            assert [a[1] for a in sample["arguments"]] == [" A", " B", " C", " D"]
            lls = [float(r[0]) for r in sample["filtered_resps"]]
            decision = max(range(4), key=lls.__getitem__)
            differing += "ABCD"[decision] != item["prediction"]
            max_delta = max(
                max_delta,
                *(abs(a - b) for a, b in zip(lls, item["loglikelihoods"], strict=True)),
            )
        report.append(
            {
                "subject": subject,
                "ours_accuracy": ours.metrics["accuracy"],
                "lm_eval_accuracy": out["results"][task]["acc,none"],
                "differing_decisions": differing,
                "max_loglikelihood_delta": max_delta,
                "ours_seconds": round(ours_s, 1),
                "lm_eval_seconds": round(theirs_s, 1),
            }
        )
    print(json.dumps(report, indent=2))
    assert all(r["differing_decisions"] == 0 for r in report)
    assert all(r["ours_accuracy"] == r["lm_eval_accuracy"] for r in report)
