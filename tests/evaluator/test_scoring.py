"""Log-likelihood scoring on the bundled model: the cached prefix changes nothing but speed."""

from __future__ import annotations

import torch

from forgeline.evaluator.builtin import builtin_suite
from forgeline.evaluator.loglikelihood import LoglikelihoodScorer, common_prefix_length
from forgeline.evaluator.multiple_choice import (
    MultipleChoiceSuite,
    build_prompts,
    run_multiple_choice,
    score_subject,
)
from forgeline.evaluator.multiple_choice_data import MultipleChoiceFormat, load_subjects

LETTERS = [" A", " B", " C", " D"]


def _direct_loglikelihood(loaded, context: str, continuation: str) -> float:
    """The plain computation: one uncached forward over the whole sequence, batch of one."""
    tok = loaded.tokenizer
    ctx = tok.encode(context)
    cont = tok.encode(context + continuation)[len(ctx) :]
    ids = torch.tensor([ctx + cont])
    with torch.inference_mode():
        logprobs = torch.log_softmax(loaded.model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))


def test_option_letters_are_single_tokens(loaded, ll_scorer, mmlu_dir):
    for letter in LETTERS:
        assert len(loaded.tokenizer.encode(letter)) == 1
    (subject,) = load_subjects(mmlu_dir, MultipleChoiceFormat.MMLU, ["anatomy"])
    prompts = build_prompts(subject, MultipleChoiceFormat.MMLU, 5)[:3]
    rows, questions = ll_scorer.build_rows(prompts, LETTERS)
    # One row per question, read at its last position for all four letters.
    assert len(rows) == 3
    assert [len(q.slots) for q in questions] == [4, 4, 4]
    for row, prompt in zip(rows, prompts, strict=True):
        assert list(row.tokens) == loaded.tokenizer.encode(prompt)


def test_cached_prefix_gives_the_uncached_scores(loaded, mmlu_dir):
    (subject,) = load_subjects(mmlu_dir, MultipleChoiceFormat.MMLU, ["high_school_geography"])
    prompts = build_prompts(subject, MultipleChoiceFormat.MMLU, 5)[:8]
    cached = LoglikelihoodScorer(loaded.model, loaded.tokenizer, batch_size=4)
    plain = LoglikelihoodScorer(loaded.model, loaded.tokenizer, batch_size=1)
    with_cache = cached.score(prompts, LETTERS, use_prefix_cache=True)
    without = plain.score(prompts, LETTERS, use_prefix_cache=False)
    for a, b in zip(with_cache, without, strict=True):
        assert max(range(4), key=a.__getitem__) == max(range(4), key=b.__getitem__)
        assert all(abs(x - y) < 1e-4 for x, y in zip(a, b, strict=True))
    # And both are the plain computation.
    assert abs(with_cache[0][2] - _direct_loglikelihood(loaded, prompts[0], " C")) < 1e-4


def test_prefix_is_cut_on_tokens_not_text(loaded, ll_scorer):
    # "\n\n" is one token at the end of a text but two before a word: a prefix tokenized on
    # its own would not be a prefix of the whole prompt's tokens.
    tok = loaded.tokenizer
    prefix = "Facts follow.\n\n"
    assert tok.encode(prefix) != tok.encode(prefix + "Water")[: len(tok.encode(prefix))]
    contexts = [prefix + f"Water boils at {n} degrees. True or false? Answer:" for n in (90, 100)]
    rows, _ = ll_scorer.build_rows(contexts, [" True", " False"])
    shared = common_prefix_length([r.tokens for r in rows])
    assert rows[0].tokens[:shared] == tuple(tok.encode(contexts[0]))[:shared]
    cached = ll_scorer.score(contexts, [" True", " False"], use_prefix_cache=True)
    plain = ll_scorer.score(contexts, [" True", " False"], use_prefix_cache=False)
    for a, b in zip(cached, plain, strict=True):
        assert all(abs(x - y) < 1e-4 for x, y in zip(a, b, strict=True))


def test_multi_token_options_fall_back_to_full_continuations(loaded, ll_scorer):
    context = "The following are animals.\n\nThe largest land animal is the"
    options = [" African elephant", " house cat", " hummingbird"]
    rows, _ = ll_scorer.build_rows([context], options)
    assert len(rows) == 3 and all(len(r.continuations) == 1 for r in rows)
    (scores,) = ll_scorer.score([context], options)
    expected = [_direct_loglikelihood(loaded, context, o) for o in options]
    assert all(abs(a - b) < 1e-4 for a, b in zip(scores, expected, strict=True))
    (uncached,) = ll_scorer.score([context], options, use_prefix_cache=False)
    assert all(abs(a - b) < 1e-4 for a, b in zip(scores, uncached, strict=True))


def test_subject_scores_add_up_to_the_overall(ll_scorer):
    mini = builtin_suite("mmlu-mini")
    suite = mini.multiple_choice(
        name="mmlu",
        subjects=("abstract_algebra", "high_school_geography"),
        limit_per_subject=3,
    )
    progress = []
    result = run_multiple_choice(ll_scorer, suite, on_items=lambda n, s: progress.append((n, s)))
    assert set(result.subjects) == {"abstract_algebra", "high_school_geography"}
    assert all(s.total == 3 for s in result.subjects.values())
    correct = sum(s.correct for s in result.subjects.values())
    assert result.num_samples == 6 == len(result.items)
    assert result.metrics["accuracy"] == correct / 6
    assert correct == sum(1 for i in result.items if i["correct"])
    assert sum(n for n, _ in progress) == 6
    item = result.items[0]
    assert item["prompt"].startswith("The following are multiple choice questions")
    assert item["prediction"] in "ABCD" and item["answer"] in "ABCD"
    assert item["correct"] == (item["prediction"] == item["answer"])
    assert len(item["loglikelihoods"]) == 4
    assert result.to_pb().subjects["abstract_algebra"].total == 3


def test_ceval_and_cmmlu_items_score(ll_scorer, ceval_dir, cmmlu_dir):
    for fmt, folder, subject in (
        (MultipleChoiceFormat.CEVAL, ceval_dir, "computer_network"),
        (MultipleChoiceFormat.CMMLU, cmmlu_dir, "agronomy"),
    ):
        suite = MultipleChoiceSuite(
            name=fmt.value,
            folder=folder,
            format=fmt,
            subjects=(subject,),
            num_few_shot=1,
            limit_per_subject=2,
        )
        result = run_multiple_choice(ll_scorer, suite)
        assert result.num_samples == 2
        assert all(i["prediction"] in "ABCD" for i in result.items)
        assert all(i["prompt"].endswith("答案：") for i in result.items)  # noqa: RUF001


def test_score_subject_without_cache_agrees(ll_scorer):
    mini = builtin_suite("mmlu-mini")
    (subject,) = mini.multiple_choice(subjects=("marketing",), limit_per_subject=3).load()
    cached = score_subject(ll_scorer, subject, MultipleChoiceFormat.MMLU, 5)
    plain = score_subject(ll_scorer, subject, MultipleChoiceFormat.MMLU, 5, use_prefix_cache=False)
    assert [i["prediction"] for i in cached.items] == [i["prediction"] for i in plain.items]
