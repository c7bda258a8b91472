"""Evaluation sets shipped with the evaluator, small enough to run anywhere (CI included).

Only MIT-licensed sources are shipped (their `PROVENANCE.md` and `LICENSE` sit beside the
data under `data/`):

- `mmlu-mini`: multiple choice in the MMLU layout; 5 subjects, each with its 5 `dev` examples
  and its first 30 `test` questions.
- `gsm8k-mini`: generation QA matched by number; the first 30 GSM8K test problems.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from forgeline.client import exceptions
from forgeline.evaluator.generation_qa import GenerationQaSuite
from forgeline.evaluator.matching import Matcher, MatchRule
from forgeline.evaluator.multiple_choice import MultipleChoiceSuite
from forgeline.evaluator.multiple_choice_data import MultipleChoiceFormat

DATA_DIR = Path(__file__).resolve().parent / "data"


class SuiteKind(enum.StrEnum):
    """What a built-in set is scored as."""

    MULTIPLE_CHOICE = "multiple_choice"
    GENERATION_QA = "generation_qa"


@dataclass(frozen=True)
class BuiltinSuite:
    """A shipped evaluation set and the settings it is meant to run with.

    Attributes:
        name: Its name, e.g. `mmlu-mini`.
        kind: How it is scored.
        path: Its folder.
        description: One line for listings.
        format: The multiple-choice layout (multiple-choice sets).
        num_few_shot: Recommended shots (multiple-choice sets).
        match_rule: How answers are matched (generation sets).
        max_new_tokens: Recommended answer length (generation sets).
    """

    name: str
    kind: SuiteKind
    path: Path
    description: str
    format: MultipleChoiceFormat = MultipleChoiceFormat.MMLU
    num_few_shot: int = 0
    match_rule: MatchRule = MatchRule.EXACT
    max_new_tokens: int = 0

    def multiple_choice(
        self, *, name: str = "", field_prefix: str = "", **options
    ) -> MultipleChoiceSuite:
        """A multiple-choice suite over this set; `options` override its fields.

        Raises:
            InvalidArgument: the set is not a multiple-choice one.
        """
        if self.kind is not SuiteKind.MULTIPLE_CHOICE:
            raise exceptions.InvalidArgument(
                f"{field_prefix}.builtin" if field_prefix else "builtin",
                f"{self.name} is a {self.kind.value} set, not a multiple-choice one",
            )
        options.setdefault("num_few_shot", self.num_few_shot)
        return MultipleChoiceSuite(
            name=name or self.name,
            folder=self.path,
            format=self.format,
            field_prefix=field_prefix,
            source_field="builtin",
            **options,
        )

    def generation_qa(
        self, *, name: str = "", field_prefix: str = "", **options
    ) -> GenerationQaSuite:
        """A generation QA suite over this set; `options` override its fields.

        Raises:
            InvalidArgument: the set is not a generation QA one.
        """
        if self.kind is not SuiteKind.GENERATION_QA:
            raise exceptions.InvalidArgument(
                f"{field_prefix}.builtin" if field_prefix else "builtin",
                f"{self.name} is a {self.kind.value} set, not a generation QA one",
            )
        options.setdefault("matcher", Matcher(self.match_rule))
        options.setdefault("max_new_tokens", self.max_new_tokens)
        return GenerationQaSuite(
            name=name or self.name, path=self.path, field_prefix=field_prefix, **options
        )


def builtin_suites() -> dict[str, BuiltinSuite]:
    """Every shipped set by name."""
    return {
        "mmlu-mini": BuiltinSuite(
            name="mmlu-mini",
            kind=SuiteKind.MULTIPLE_CHOICE,
            path=DATA_DIR / "mmlu-mini",
            description="MMLU, 5 subjects x 30 test questions, 5-shot",
            format=MultipleChoiceFormat.MMLU,
            num_few_shot=5,
        ),
        "gsm8k-mini": BuiltinSuite(
            name="gsm8k-mini",
            kind=SuiteKind.GENERATION_QA,
            path=DATA_DIR / "gsm8k-mini" / "test.jsonl",
            description="GSM8K, the first 30 test problems, final number matched",
            match_rule=MatchRule.NUMERIC,
            max_new_tokens=256,
        ),
    }


def builtin_suite(name: str, *, field: str = "builtin") -> BuiltinSuite:
    """The shipped set of that name.

    Raises:
        InvalidArgument: no such set (the message lists the shipped ones).
    """
    suites = builtin_suites()
    if name not in suites:
        raise exceptions.InvalidArgument(
            field, f"unknown built-in suite {name!r}; available: {', '.join(sorted(suites))}"
        )
    return suites[name]
