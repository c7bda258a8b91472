"""Match rules of generation QA, and GSM8K's numeric answers on the real data."""

from __future__ import annotations

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.evaluator.matching import (
    Matcher,
    MatchRule,
    last_number,
    normalize_answer,
    numbers_equal,
    reference_number,
)
from forgeline.evaluator.text_data import load_qa


def test_exact_strips_whitespace_and_honours_case():
    exact = Matcher(MatchRule.EXACT)
    assert exact.matches("  Paris\n", ["Paris"])
    assert not exact.matches("paris", ["Paris"])
    assert Matcher(MatchRule.EXACT, ignore_case=True).matches("PARIS", ["paris"])
    assert not exact.matches("Paris.", ["Paris"])


def test_any_of_several_answers_counts():
    assert Matcher(MatchRule.EXACT).matches("Lyon", ["Paris", "Lyon"])


def test_normalized_is_squad_normalisation():
    assert normalize_answer("  The  Eiffel-Tower!  ") == "eiffeltower"
    assert normalize_answer("An apple, a pear") == "apple pear"
    rule = Matcher(MatchRule.NORMALIZED)
    assert rule.matches("The capital is Paris.", ["the Capital is paris"])
    assert not rule.matches("Paris, France", ["Paris"])


def test_contains():
    rule = Matcher(MatchRule.CONTAINS)
    assert rule.matches("The capital of France is Paris.", ["Paris"])
    assert not rule.matches("The capital of France is paris.", ["Paris"])
    assert Matcher(MatchRule.CONTAINS, ignore_case=True).matches("PARIS!", ["paris"])


def test_regex_uses_first_group_or_whole_match():
    grouped = Matcher(MatchRule.REGEX, pattern=r"answer is (\w+)")
    assert grouped.extract("I think the answer is Paris.") == "Paris"
    assert grouped.matches("I think the answer is Paris.", ["Paris"])
    assert not grouped.matches("no answer here", ["Paris"])
    whole = Matcher(MatchRule.REGEX, pattern=r"[A-D]\b")
    assert whole.extract("It must be C here") == "C"
    folded = Matcher(MatchRule.REGEX, pattern=r"answer: (\w+)", ignore_case=True)
    assert folded.matches("ANSWER: paris", ["Paris"])


def test_regex_pattern_is_checked():
    with pytest.raises(InvalidArgument, match="invalid regular expression"):
        Matcher(MatchRule.REGEX, pattern="(unclosed").check("spec.suites[1].generation_qa.regex")
    with pytest.raises(InvalidArgument, match="needs a pattern"):
        Matcher(MatchRule.REGEX).check()
    Matcher(MatchRule.EXACT, pattern="(ignored").check()


def test_numbers():
    assert last_number("First 3, then 1,250.50 dollars.") == "1250.50"
    assert last_number("no digits") is None
    assert last_number("It is -4.") == "-4"
    assert reference_number("so 9 * 2 = 18\n#### 1,800") == "1800"
    assert reference_number("42") == "42"
    assert numbers_equal("18", "18.00")
    assert not numbers_equal("18", "81")
    assert not numbers_equal(None, "1")


def test_numeric_rule_reads_the_last_number_of_the_output():
    rule = Matcher(MatchRule.NUMERIC)
    reference = "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"
    assert rule.matches("9 eggs are sold, 9 * 2 = 18. The answer is $18.", [reference])
    assert not rule.matches("The answer is 18, or maybe 20", [reference])
    assert rule.extract("costs 1,000 dollars") == "1000"


def test_gsm8k_references_from_the_real_file(gsm8k_file):
    items = load_qa(gsm8k_file, limit=3)
    assert [reference_number(i.answers[0]) for i in items] == ["18", "3", "70000"]
    rule = Matcher(MatchRule.NUMERIC)
    assert rule.matches("Janet sells 9 eggs for $2 each, so she makes $18.", items[0].answers)
    assert rule.matches("Total profit: $70,000", items[2].answers)
    assert not rule.matches("She makes 16 dollars.", items[0].answers)
