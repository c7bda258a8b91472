"""Perplexity suites: the `text` field of a dataset scored with a sliding window.

The windowed computation itself is the quantizer's (`forgeline.quantizer.perplexity`), so a
quantized model's perplexity in its quantize job and in an evaluation agree: the documents are
joined with a blank line between them and every token after the first is scored once. This
module only reads the data, resolves the window defaults and reports the suite's metrics
(`neg_log_likelihood` is the mean per scored token, the log of the perplexity).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.client import exceptions
from forgeline.evaluator.loglikelihood import model_max_length
from forgeline.evaluator.results import ItemsDone, SuiteResult
from forgeline.evaluator.text_data import load_texts

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 2048


@dataclass(frozen=True)
class PerplexitySuite:
    """A perplexity suite, with its data already on disk.

    Attributes:
        name: Name results are reported under.
        path: A `.jsonl` file or a folder of them, with a `text` field.
        max_seq_length: Window length in tokens; 0 means min(model context, 2048).
        stride: Tokens the window advances by; 0 means the window length (no overlap).
        limit: Documents scored; 0 for all.
        field_prefix: Spec path of the suite (`spec.suites[2].perplexity`) for errors.
    """

    name: str
    path: Path
    max_seq_length: int = 0
    stride: int = 0
    limit: int = 0
    field_prefix: str = ""

    def spec_field(self, name: str) -> str:
        """Full spec path of one of the suite's fields."""
        return f"{self.field_prefix}.{name}" if self.field_prefix else name

    def load(self) -> list[str]:
        """Reads the documents.

        Raises:
            InvalidArgument: a line without a `text` string, or no document at all.
        """
        return load_texts(self.path, limit=self.limit, field=self.spec_field("dataset"))


def window_sizes(suite: PerplexitySuite, model: Any, tokenizer: Any) -> tuple[int, int]:
    """(window, stride) after defaults."""
    window = suite.max_seq_length or min(model_max_length(model, tokenizer), DEFAULT_WINDOW)
    return window, suite.stride or window


def run_perplexity(
    model: Any,
    tokenizer: Any,
    suite: PerplexitySuite,
    *,
    texts: list[str] | None = None,
    on_items: ItemsDone | None = None,
) -> SuiteResult:
    """Runs a suite: perplexity and mean negative log-likelihood per token of the texts.

    Raises:
        InvalidArgument: the data cannot be loaded, or the window does not fit the stride.
    """
    # Imported here: the quantizer's module pulls in its own dependencies only when used.
    from forgeline.quantizer import perplexity

    started = time.monotonic()
    texts = suite.load() if texts is None else texts
    window, stride = window_sizes(suite, model, tokenizer)
    if stride > window:
        raise exceptions.InvalidArgument(
            suite.spec_field("stride"), f"must be at most the window length ({window})"
        )
    value = perplexity.model_perplexity(model, tokenizer, texts, max_length=window, stride=stride)
    if on_items is not None:
        on_items(len(texts), suite.name)
    result = SuiteResult(suite_name=suite.name, num_samples=len(texts))
    result.metrics = {"perplexity": value, "neg_log_likelihood": math.log(value)}
    result.items = [{"window": window, "stride": stride, "documents": len(texts)}]
    result.wall_seconds = time.monotonic() - started
    log.info("%s: perplexity %.3f over %d documents", suite.name, value, len(texts))
    return result
