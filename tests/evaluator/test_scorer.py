"""The job entry point: one model, several suites, progress, generation QA, adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.evaluator.builtin import builtin_suite
from forgeline.evaluator.generation_qa import (
    GenerationQaSuite,
    generate_greedy,
    render_prompt,
    run_generation_qa,
)
from forgeline.evaluator.matching import Matcher, MatchRule
from forgeline.evaluator.perplexity_suite import PerplexitySuite
from forgeline.evaluator.scorer import Scorer, load_model


def _capital_qa(tmp_path: Path) -> Path:
    path = tmp_path / "capitals.jsonl"
    path.write_text(
        json.dumps({"question": "What is the capital of France?", "answers": ["Paris"]}) + "\n"
    )
    return path


def test_scorer_runs_suites_in_order_with_progress(bundled_model, tmp_path):
    suites = [
        builtin_suite("mmlu-mini").multiple_choice(
            name="mmlu", subjects=("marketing",), num_few_shot=1, limit_per_subject=2
        ),
        GenerationQaSuite(
            name="capitals",
            path=_capital_qa(tmp_path),
            matcher=Matcher(MatchRule.CONTAINS),
            max_new_tokens=16,
        ),
        builtin_suite("gsm8k-mini").generation_qa(limit=2, max_new_tokens=8),
    ]
    progress = []
    scorer = Scorer(bundled_model, batch_size=4)
    results = scorer.run(suites, lambda done, total, stage: progress.append((done, total, stage)))

    assert [r.suite_name for r in results] == ["mmlu", "capitals", "gsm8k-mini"]
    assert [r.num_samples for r in results] == [2, 1, 2]
    assert results[0].subjects["marketing"].total == 2
    assert results[1].metrics == {"accuracy": 1.0}
    assert "Paris" in results[1].items[0]["output"]
    assert results[2].items[0]["answers"][0].endswith("#### 18")
    dones = [d for d, _, _ in progress]
    assert dones == sorted(dones) and dones[-1] == 5
    assert {t for _, t, _ in progress} == {5}
    stages = [s for _, _, s in progress]
    assert "mmlu/marketing" in stages and "capitals" in stages and stages[-1] == "gsm8k-mini"


def test_bad_data_fails_before_the_model_loads(bundled_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "no answer here"}) + "\n")
    suites = [
        builtin_suite("mmlu-mini").multiple_choice(limit_per_subject=1),
        GenerationQaSuite(name="qa", path=bad, field_prefix="spec.suites[1].generation_qa"),
    ]
    scorer = Scorer(bundled_model)
    with pytest.raises(InvalidArgument) as err:
        scorer.run(suites)
    assert err.value.violations[0].field == "spec.suites[1].generation_qa.dataset"
    assert scorer._loaded is None


def test_batched_generation_equals_one_at_a_time(loaded):
    questions = ["What is the capital of France?", "Name a color.", "What is 2 + 2? Explain."]
    prompts = [render_prompt(loaded.tokenizer, q, True) for q in questions]
    assert len({len(p) for p in prompts}) == 3
    batched = generate_greedy(loaded.model, loaded.tokenizer, prompts, max_new_tokens=10)
    single = generate_greedy(
        loaded.model, loaded.tokenizer, prompts, max_new_tokens=10, batch_size=1
    )
    assert batched == single


def test_chat_template_is_used_when_present(loaded, tmp_path):
    suite = GenerationQaSuite(name="qa", path=_capital_qa(tmp_path), max_new_tokens=4)
    result = run_generation_qa(loaded.model, loaded.tokenizer, suite)
    assert result.items[0]["prompt"].startswith("<|im_start|>")
    plain = GenerationQaSuite(
        name="qa", path=suite.path, max_new_tokens=4, apply_chat_template=False
    )
    result = run_generation_qa(loaded.model, loaded.tokenizer, plain)
    assert result.items[0]["prompt"] == "What is the capital of France?"


def test_adapter_is_applied_on_its_base(bundled_model, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_model(bundled_model).model
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")

    scorer = Scorer(bundled_model, adapter_dir=tmp_path / "adapter", batch_size=2)
    assert isinstance(scorer.loaded.model, PeftModel)
    suite = builtin_suite("mmlu-mini").multiple_choice(
        subjects=("marketing",), num_few_shot=1, limit_per_subject=2
    )
    (result,) = scorer.run([suite])
    assert result.num_samples == 2


def test_perplexity_suite_uses_the_quantizer_function(loaded, tmp_path):
    pytest.importorskip("forgeline.quantizer.perplexity")
    from forgeline.evaluator.perplexity_suite import run_perplexity

    path = tmp_path / "text.jsonl"
    path.write_text(json.dumps({"text": "The capital of France is Paris. " * 20}) + "\n")
    result = run_perplexity(
        loaded.model, loaded.tokenizer, PerplexitySuite(name="ppl", path=path, max_seq_length=64)
    )
    assert result.metrics["perplexity"] > 1.0
    assert result.num_samples == 1
