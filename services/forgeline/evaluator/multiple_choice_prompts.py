"""Prompt text of multiple-choice questions, laid out as lm-evaluation-harness 0.4.13 does.

MMLU follows lm-eval's `mmlu` default template: a description naming the subject (underscores
as spaces), the k first `dev` examples in file order, each
`"{question.strip()}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer:"` followed by the target
delimiter `" "` and its letter, joined and ended by the few-shot delimiter `"\\n\\n"`, then the
question itself without its answer. The options are the letters; a letter's continuation is
`" A"`, `" B"`, ...

C-Eval and CMMLU use lm-eval's `ceval-valid` / `cmmlu` templates (answer cue `答案` and a
full-width colon); their descriptions name the subject by its folder name, where lm-eval's
task files use a Chinese display name, unless the caller passes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from forgeline.evaluator.multiple_choice_data import (
    LETTERS,
    MultipleChoiceFormat,
    MultipleChoiceItem,
)


@dataclass(frozen=True)
class PromptTemplate:
    """How one format renders a question and its few-shot examples.

    Attributes:
        description: Text before the examples; `{subject}` is replaced by the subject's name.
        answer_cue: Text closing each question, after the options.
        target_delimiter: Between the cue and the answer letter (lm-eval's default `" "`).
        fewshot_delimiter: After each solved example (lm-eval's default `"\\n\\n"`).
    """

    description: str
    answer_cue: str
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"

    def question_text(self, item: MultipleChoiceItem) -> str:
        """The question with its options, up to and including the answer cue."""
        options = "".join(
            f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices, strict=True)
        )
        return f"{item.question.strip()}{options}\n{self.answer_cue}"

    def continuations(self) -> list[str]:
        """The scored continuation of each option: delimiter + letter."""
        return [self.target_delimiter + letter for letter in LETTERS]

    def fewshot_prefix(self, subject_name: str, examples: Sequence[MultipleChoiceItem]) -> str:
        """Description and solved examples: the part of the prompt every question shares."""
        description = self.description.format(subject=subject_name)
        solved = "".join(
            self.question_text(ex)
            + self.target_delimiter
            + ex.answer_letter
            + self.fewshot_delimiter
            for ex in examples
        )
        # Plain concatenation, as lm-eval renders its system, user and assistant messages.
        return description + solved

    def prompt(self, prefix: str, item: MultipleChoiceItem) -> str:
        """The whole context a question is scored in."""
        return prefix + self.question_text(item)


TEMPLATES = {
    MultipleChoiceFormat.MMLU: PromptTemplate(
        description=(
            "The following are multiple choice questions (with answers) about {subject}.\n\n"
        ),
        answer_cue="Answer:",
    ),
    MultipleChoiceFormat.CEVAL: PromptTemplate(
        description="以下是中国关于{subject}的单项选择题，请选出其中的正确答案。\n\n",  # noqa: RUF001
        answer_cue="答案：",  # noqa: RUF001
    ),
    MultipleChoiceFormat.CMMLU: PromptTemplate(
        description="以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n",  # noqa: RUF001
        answer_cue="答案：",  # noqa: RUF001
    ),
}


def subject_display_name(subject: str, names: Mapping[str, str] | None = None) -> str:
    """The subject as the description names it: a given display name, else spaces for `_`."""
    if names and subject in names:
        return names[subject]
    return subject.replace("_", " ")
