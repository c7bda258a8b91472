"""Rules that decide whether a generated answer matches a reference answer.

An output matches a reference answer when, by rule:

- EXACT: stripped of surrounding whitespace, it equals the answer.
- NORMALIZED: both are equal after SQuAD's normalisation (lower case, no punctuation, no
  articles `a`/`an`/`the`, single spaces).
- CONTAINS: it contains the answer.
- REGEX: the pattern's first group (or whole match, when it has no group), searched in the
  output, equals the answer.
- NUMERIC: its last number equals the reference's number, the one after `####` (GSM8K) or
  else the reference's last number; commas are dropped and `18.0` equals `18`.

`ignore_case` folds case for EXACT, CONTAINS and REGEX (NORMALIZED always does).
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from forgeline.client import exceptions

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
GSM8K_SEPARATOR = "####"


class MatchRule(enum.StrEnum):
    """How an output is compared with the reference answers."""

    EXACT = "exact"
    NORMALIZED = "normalized"
    CONTAINS = "contains"
    REGEX = "regex"
    NUMERIC = "numeric"


@dataclass(frozen=True)
class Matcher:
    """A configured rule.

    Attributes:
        rule: The rule.
        pattern: The regular expression, for REGEX.
        ignore_case: Fold case before comparing (EXACT, CONTAINS, REGEX).
    """

    rule: MatchRule = MatchRule.EXACT
    pattern: str = ""
    ignore_case: bool = False

    def check(self, field: str = "regex_pattern") -> None:
        """Validates the pattern of a REGEX rule.

        Raises:
            InvalidArgument: REGEX without a pattern, or a pattern that does not compile.
        """
        if self.rule is not MatchRule.REGEX:
            return
        if not self.pattern:
            raise exceptions.InvalidArgument(field, "the regex rule needs a pattern")
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise exceptions.InvalidArgument(field, f"invalid regular expression: {err}") from None

    def extract(self, output: str) -> str | None:
        """What the rule compares from an output (None when nothing can be extracted)."""
        if self.rule is MatchRule.NUMERIC:
            return last_number(output)
        if self.rule is MatchRule.REGEX:
            flags = re.IGNORECASE if self.ignore_case else 0
            found = re.search(self.pattern, output, flags)
            if found is None:
                return None
            return found.group(1) if found.re.groups else found.group(0)
        if self.rule is MatchRule.NORMALIZED:
            return normalize_answer(output)
        return output.strip()

    def matches(self, output: str, answers: Sequence[str]) -> bool:
        """Whether the output matches any of the reference answers."""
        return any(self._matches_one(output, answer) for answer in answers)

    def _matches_one(self, output: str, answer: str) -> bool:
        if self.rule is MatchRule.NUMERIC:
            return numbers_equal(last_number(output), reference_number(answer))
        if self.rule is MatchRule.NORMALIZED:
            return normalize_answer(output) == normalize_answer(answer)
        fold = str.casefold if self.ignore_case else _same
        if self.rule is MatchRule.CONTAINS:
            return fold(answer.strip()) in fold(output)
        extracted = self.extract(output)
        if extracted is None:
            return False
        return fold(extracted.strip()) == fold(answer.strip())


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, drop punctuation and articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def last_number(text: str) -> str | None:
    """The last number in a text, commas removed (None when there is none)."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def reference_number(answer: str) -> str | None:
    """The number a reference answer states: after `####` when present, else its last one."""
    if GSM8K_SEPARATOR in answer:
        answer = answer.rsplit(GSM8K_SEPARATOR, 1)[1]
        found = _NUMBER.search(answer)
        return found.group(0).replace(",", "") if found else None
    return last_number(answer)


def numbers_equal(a: str | None, b: str | None) -> bool:
    """Numeric equality of two number strings (`18` equals `18.00`); False when either is None."""
    if a is None or b is None:
        return False
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return a == b


def _same(text: str) -> str:
    return text
