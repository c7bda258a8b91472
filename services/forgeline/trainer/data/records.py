"""Canonical training records, dataset problems, and the dataset that holds both.

Every accepted record becomes one of three canonical forms: a chat `Conversation`, a
plain `Text`, or a `Preference` pair. Every rejected one leaves a `Problem` naming the
file, the line (or row) and the field; a `ProblemSink` keeps the first `MAX_PROBLEMS` of
them and counts the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forgeline.trainer.config import DataFormat

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Conversation:
    """A chat: `messages` of `{"role", "content"}` with at least one assistant turn."""

    messages: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class Text:
    """A plain document for continued pre-training."""

    text: str


@dataclass(frozen=True)
class Preference:
    """A prompt (as chat messages) with a preferred and a dispreferred answer."""

    prompt: tuple[dict[str, str], ...]
    chosen: str
    rejected: str


Example = Conversation | Text | Preference


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where (file, line, field) and what."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass
class Dataset:
    """A validated dataset: its canonical examples, its format, and what was wrong."""

    examples: list[Example] = field(default_factory=list)
    format: DataFormat = DataFormat.AUTO
    problems: list[Problem] = field(default_factory=list)
    more_problems: int = 0
    records: int = 0

    @property
    def ok(self) -> bool:
        """Whether the dataset has no problem."""
        return not self.problems

    def describe_problems(self) -> list[str]:
        """Human-readable problems, with a closing count of those left out."""
        lines = [str(p) for p in self.problems]
        if self.more_problems:
            lines.append(f"... and {self.more_problems} more problems")
        return lines


class ProblemSink:
    """Records a dataset's problems, keeping the first `MAX_PROBLEMS` and counting the rest.

    Args:
        dataset: The dataset whose `problems` and `more_problems` are written.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def add(self, file: str, line: int, field_name: str, message: str) -> None:
        """Records a problem at `file:line` (line 0: the whole file) with `field_name`."""
        if len(self.dataset.problems) < MAX_PROBLEMS:
            self.dataset.problems.append(Problem(file, line, field_name, message))
        else:
            self.dataset.more_problems += 1
