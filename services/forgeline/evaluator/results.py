"""Results of evaluation suites: per-subject scores, suite metrics and per-item rows.

These are the domain types the job runner turns into an `EvalReport`; `to_pb()` builds the
protobuf messages (plain protobuf, no grpc).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Progress of one suite: items just finished (a delta) and what is being scored.
ItemsDone = Callable[[int, str], None]


@dataclass
class SubjectScore:
    """Correct answers of one subject."""

    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        """correct / total (0 when nothing was scored)."""
        return self.correct / self.total if self.total else 0.0

    def to_pb(self) -> Any:
        """The `SubjectScore` message."""
        from forgeline.v1 import evaluator_pb2

        return evaluator_pb2.SubjectScore(
            correct=self.correct, total=self.total, accuracy=self.accuracy
        )


@dataclass
class SuiteResult:
    """Everything one suite produced.

    Attributes:
        suite_name: The suite's name.
        metrics: Metric name -> value (`accuracy`, `perplexity`, ...).
        subjects: Subject -> score, for multiple-choice suites.
        num_samples: Items scored.
        wall_seconds: Wall-clock time of the suite.
        items: One row per item (plain JSON-able dicts) for the report.
    """

    suite_name: str
    metrics: dict[str, float] = field(default_factory=dict)
    subjects: dict[str, SubjectScore] = field(default_factory=dict)
    num_samples: int = 0
    wall_seconds: float = 0.0
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_pb(self) -> Any:
        """The `EvalSuiteResult` message (items are not part of it)."""
        from forgeline.v1 import evaluator_pb2

        return evaluator_pb2.EvalSuiteResult(
            suite_name=self.suite_name,
            metrics=self.metrics,
            subjects={name: score.to_pb() for name, score in self.subjects.items()},
            num_samples=self.num_samples,
            wall_seconds=self.wall_seconds,
        )
