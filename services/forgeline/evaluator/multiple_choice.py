"""Multiple-choice suites: every option scored by the log-likelihood of its letter.

Prompts follow lm-evaluation-harness 0.4.13 (`multiple_choice_prompts`); the prediction is
the option with the highest log-likelihood (`accuracy`, lm-eval's `acc`), and with the highest
log-likelihood per character of the option (`acc_norm`, as lm-eval defines it; for letter
options the two agree). The k-shot prefix is shared by a subject's questions, so its cache is
computed once per subject (`loglikelihood`). Overall accuracy is micro-averaged over items, as
lm-eval's `mmlu` group aggregates; `accuracy_macro` is the mean of the subjects' accuracies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.evaluator.loglikelihood import LoglikelihoodScorer
from forgeline.evaluator.multiple_choice_data import (
    LETTERS,
    MultipleChoiceFormat,
    SubjectData,
    load_subjects,
)
from forgeline.evaluator.multiple_choice_prompts import TEMPLATES, subject_display_name
from forgeline.evaluator.results import ItemsDone, SubjectScore, SuiteResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MultipleChoiceSuite:
    """A multiple-choice suite, with its data already on disk.

    Attributes:
        name: Name results are reported under.
        folder: The dataset folder (a pulled DATASET version, or a built-in set).
        format: Its layout.
        subjects: Subjects to run; empty for all.
        num_few_shot: Solved `dev` examples before each question (0 is zero-shot).
        limit_per_subject: Questions scored per subject; 0 for all.
        subject_names: Display names for the description (e.g. Chinese names for C-Eval).
        field_prefix: Spec path of the suite (`spec.suites[0].multiple_choice`) for errors.
        source_field: Which field of the suite holds the data (`dataset` or `builtin`).
    """

    name: str
    folder: Path
    format: MultipleChoiceFormat = MultipleChoiceFormat.MMLU
    subjects: tuple[str, ...] = ()
    num_few_shot: int = 0
    limit_per_subject: int = 0
    subject_names: Mapping[str, str] | None = None
    field_prefix: str = ""
    source_field: str = "dataset"

    def spec_field(self, name: str) -> str:
        """Full spec path of one of the suite's fields."""
        return f"{self.field_prefix}.{name}" if self.field_prefix else name

    def load(self) -> list[SubjectData]:
        """Reads the requested subjects, each cut to `limit_per_subject` questions.

        Raises:
            InvalidArgument: unknown subjects or malformed files.
        """
        data = load_subjects(
            self.folder,
            self.format,
            self.subjects,
            field=self.spec_field(self.source_field),
            subjects_field=self.spec_field("subjects"),
        )
        if self.limit_per_subject:
            data = [SubjectData(d.subject, d.dev, d.scored[: self.limit_per_subject]) for d in data]
        return data


@dataclass(frozen=True)
class SubjectOutcome:
    """Scores of one subject's questions."""

    subject: str
    items: list[dict[str, Any]]

    @property
    def score(self) -> SubjectScore:
        """Correct and total by `accuracy`."""
        return SubjectScore(sum(1 for i in self.items if i["correct"]), len(self.items))


def build_prompts(
    data: SubjectData,
    fmt: MultipleChoiceFormat,
    num_few_shot: int,
    subject_names: Mapping[str, str] | None = None,
) -> list[str]:
    """The full prompt of every scored question of a subject."""
    template = TEMPLATES[fmt]
    if num_few_shot > len(data.dev):
        log.warning(
            "%s has %d dev examples, fewer than the %d shots asked for",
            data.subject,
            len(data.dev),
            num_few_shot,
        )
    prefix = template.fewshot_prefix(
        subject_display_name(data.subject, subject_names), data.dev[:num_few_shot]
    )
    return [template.prompt(prefix, item) for item in data.scored]


def score_subject(
    scorer: LoglikelihoodScorer,
    data: SubjectData,
    fmt: MultipleChoiceFormat,
    num_few_shot: int,
    *,
    subject_names: Mapping[str, str] | None = None,
    use_prefix_cache: bool = True,
    on_items: ItemsDone | None = None,
) -> SubjectOutcome:
    """Scores every question of one subject.

    Args:
        scorer: The model's log-likelihood scorer.
        data: The subject's questions and few-shot examples.
        fmt: The dataset's layout (picks the prompt template).
        num_few_shot: Solved examples before each question.
        subject_names: Display names of subjects for the description.
        use_prefix_cache: Reuse the shared prefix's key/value cache (same decisions, faster).
        on_items: Progress callback (items finished, subject).

    Returns:
        Per-item rows: prompt, choices, answer, prediction, correct, log-likelihoods.
    """
    prompts = build_prompts(data, fmt, num_few_shot, subject_names)
    continuations = TEMPLATES[fmt].continuations()

    def on_contexts(n: int) -> None:
        if on_items is not None:
            on_items(n, data.subject)

    lls = scorer.score(
        prompts, continuations, use_prefix_cache=use_prefix_cache, on_contexts=on_contexts
    )
    # lm-eval's acc_norm divides by the option's length in characters (its acc_bytes by UTF-8
    # bytes); for letter options both lengths are 1, so acc_norm equals acc.
    lengths = [len(letter) for letter in LETTERS]
    items = []
    for item, prompt, scores in zip(data.scored, prompts, lls, strict=True):
        pred = _argmax(scores)
        pred_norm = _argmax([s / n for s, n in zip(scores, lengths, strict=True)])
        items.append(
            {
                "subject": data.subject,
                "source": item.source,
                "prompt": prompt,
                "choices": list(item.choices),
                "answer": item.answer_letter,
                "prediction": LETTERS[pred],
                "correct": pred == item.answer,
                "correct_norm": pred_norm == item.answer,
                "loglikelihoods": scores,
            }
        )
    return SubjectOutcome(data.subject, items)


def run_multiple_choice(
    scorer: LoglikelihoodScorer,
    suite: MultipleChoiceSuite,
    *,
    data: list[SubjectData] | None = None,
    use_prefix_cache: bool = True,
    on_items: ItemsDone | None = None,
) -> SuiteResult:
    """Runs a whole suite: every subject, then per-subject and overall scores.

    Args:
        scorer: The model's log-likelihood scorer.
        suite: What to run.
        data: The suite's subjects if already loaded (`suite.load()`).
        use_prefix_cache: Reuse each subject's prefix cache.
        on_items: Progress callback (items finished, subject).

    Raises:
        InvalidArgument: the data cannot be loaded.
    """
    started = time.monotonic()
    data = suite.load() if data is None else data
    result = SuiteResult(suite_name=suite.name)
    for subject in data:
        subject_started = time.monotonic()
        outcome = score_subject(
            scorer,
            subject,
            suite.format,
            suite.num_few_shot,
            subject_names=suite.subject_names,
            use_prefix_cache=use_prefix_cache,
            on_items=on_items,
        )
        result.subjects[subject.subject] = outcome.score
        result.items.extend(outcome.items)
        log.info(
            "%s %s: %d/%d correct in %.1f s",
            suite.name,
            subject.subject,
            outcome.score.correct,
            outcome.score.total,
            time.monotonic() - subject_started,
        )
    total = sum(s.total for s in result.subjects.values())
    correct = sum(s.correct for s in result.subjects.values())
    result.num_samples = total
    result.metrics = {
        "accuracy": correct / total if total else 0.0,
        "acc_norm": sum(1 for i in result.items if i["correct_norm"]) / total if total else 0.0,
        "accuracy_macro": (
            sum(s.accuracy for s in result.subjects.values()) / len(result.subjects)
            if result.subjects
            else 0.0
        ),
    }
    result.wall_seconds = time.monotonic() - started
    return result


def _argmax(values: list[float]) -> int:
    """Index of the largest value; the first one on ties, like numpy's argmax."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best
