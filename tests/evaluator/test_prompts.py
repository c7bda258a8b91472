"""Prompt text: the lm-evaluation-harness 0.4.13 layouts, character for character."""

from __future__ import annotations

from forgeline.evaluator.multiple_choice import build_prompts
from forgeline.evaluator.multiple_choice_data import MultipleChoiceFormat, load_subjects
from forgeline.evaluator.multiple_choice_prompts import TEMPLATES, subject_display_name

# lm-eval's `mmlu_abstract_algebra` prompt for the first test question, 2-shot from `dev`.
ABSTRACT_ALGEBRA_2_SHOT = (
    "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\n"
    "A. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
    "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. "
    "Statement 2 | If H and K are subgroups of G then HK is a subgroup of G.\n"
    "A. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: B\n\n"
    "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
    "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
)


def test_mmlu_prompt_matches_lm_eval_layout(mmlu_dir):
    (subject,) = load_subjects(mmlu_dir, MultipleChoiceFormat.MMLU, ["abstract_algebra"])
    prompts = build_prompts(subject, MultipleChoiceFormat.MMLU, 2)
    assert prompts[0] == ABSTRACT_ALGEBRA_2_SHOT


def test_zero_shot_is_description_and_question(mmlu_dir):
    (subject,) = load_subjects(mmlu_dir, MultipleChoiceFormat.MMLU, ["abstract_algebra"])
    prompts = build_prompts(subject, MultipleChoiceFormat.MMLU, 0)
    assert prompts[0] == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )


def test_question_is_stripped_and_options_are_not(mmlu_dir):
    (subject,) = load_subjects(mmlu_dir, MultipleChoiceFormat.MMLU, ["abstract_algebra"])
    item = subject.scored[0]
    padded = type(item)(
        item.subject, f"  {item.question}\n", (" x", "y ", "z", "w"), 0, item.source
    )
    text = TEMPLATES[MultipleChoiceFormat.MMLU].question_text(padded)
    assert text.startswith(item.question + "\nA.  x\nB. y \n")


def test_continuations_are_space_and_letter():
    assert TEMPLATES[MultipleChoiceFormat.MMLU].continuations() == [" A", " B", " C", " D"]


def test_ceval_and_cmmlu_prompts_use_their_answer_cue(ceval_dir, cmmlu_dir):
    (ceval,) = load_subjects(ceval_dir, MultipleChoiceFormat.CEVAL, ["accountant"])
    prompt = build_prompts(ceval, MultipleChoiceFormat.CEVAL, 1, {"accountant": "注册会计师"})[0]
    assert prompt.startswith("以下是中国关于注册会计师的单项选择题")
    assert prompt.endswith("\n答案：")  # noqa: RUF001
    assert f"\n答案： {ceval.dev[0].answer_letter}\n\n" in prompt  # noqa: RUF001
    (cmmlu,) = load_subjects(cmmlu_dir, MultipleChoiceFormat.CMMLU, ["agronomy"])
    prompt = build_prompts(cmmlu, MultipleChoiceFormat.CMMLU, 0)[0]
    assert prompt == (
        "以下是关于agronomy的单项选择题，请直接给出正确答案的选项。\n\n"  # noqa: RUF001
        "在农业生产中被当作极其重要的劳动对象发挥作用，最主要的不可替代的基本生产资料是\n"  # noqa: RUF001
        "A. 农业生产工具\nB. 土地\nC. 劳动力\nD. 资金\n答案："  # noqa: RUF001
    )


def test_subject_display_name():
    assert subject_display_name("high_school_physics") == "high school physics"
    assert subject_display_name("agronomy", {"agronomy": "农学"}) == "农学"
