"""Generation QA suites: greedy answers to questions, matched against reference answers.

Each question is rendered with the model's chat template (as a single user turn) when the
model has one, unless the suite says otherwise, else fed as plain text. Questions are
generated in batches, longest first, left-padded so every row's last prompt token sits at the
same position; decoding is greedy and stops at the model's end-of-sequence token or
`max_new_tokens`. Outputs are compared by a `Matcher` (exact, normalised, contains, regex,
numeric).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from forgeline.evaluator.matching import Matcher
from forgeline.evaluator.results import ItemsDone, SuiteResult
from forgeline.evaluator.text_data import QaItem, load_qa

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 64


@dataclass(frozen=True)
class GenerationQaSuite:
    """A generation QA suite, with its data already on disk.

    Attributes:
        name: Name results are reported under.
        path: A `.jsonl` file or a folder of them (`question`, `answer` or `answers`).
        matcher: How outputs are compared with answers.
        max_new_tokens: Longest answer generated.
        limit: Questions scored; 0 for all.
        apply_chat_template: Render questions with the chat template; None means yes when
            the tokenizer has one.
        field_prefix: Spec path of the suite (`spec.suites[1].generation_qa`) for errors.
    """

    name: str
    path: Path
    matcher: Matcher = field(default_factory=Matcher)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    limit: int = 0
    apply_chat_template: bool | None = None
    field_prefix: str = ""

    def spec_field(self, name: str) -> str:
        """Full spec path of one of the suite's fields."""
        return f"{self.field_prefix}.{name}" if self.field_prefix else name

    def load(self) -> list[QaItem]:
        """Reads the questions and checks the match rule.

        Raises:
            InvalidArgument: malformed data, a question without answers, or a bad pattern.
        """
        self.matcher.check(self.spec_field("regex_pattern"))
        return load_qa(self.path, limit=self.limit, field=self.spec_field("dataset"))


def render_prompt(tokenizer: Any, question: str, use_chat_template: bool) -> list[int]:
    """Token ids of the prompt for one question."""
    if use_chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        # The template already holds every special token the model expects.
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(question)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


@torch.inference_mode()
def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy completions of tokenized prompts, in the prompts' order.

    Args:
        model: A Hugging Face causal LM (or a `PeftModel`).
        tokenizer: Its tokenizer (decodes the outputs).
        prompts: Token ids of each prompt.
        max_new_tokens: Longest completion.
        batch_size: Prompts generated together.
        on_batch: Called with the number of prompts finished by each batch.

    Returns:
        Each completion's text, special tokens removed, surrounding whitespace kept.
    """
    from transformers import GenerationConfig

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad_id
    )
    device = next(model.parameters()).device
    outputs: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    for start in range(0, len(order), max(1, batch_size)):
        batch = order[start : start + max(1, batch_size)]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            tokens = list(prompts[i])
            ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            mask[row, width - len(tokens) :] = 1
        generated = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
        )
        for row, i in enumerate(batch):
            outputs[i] = tokenizer.decode(generated[row, width:], skip_special_tokens=True)
        if on_batch is not None:
            on_batch(len(batch))
    return outputs


def run_generation_qa(
    model: Any,
    tokenizer: Any,
    suite: GenerationQaSuite,
    *,
    items: list[QaItem] | None = None,
    batch_size: int = 8,
    on_items: ItemsDone | None = None,
) -> SuiteResult:
    """Runs a suite: generates every answer and matches it.

    Args:
        model: The model.
        tokenizer: Its tokenizer.
        suite: What to run.
        items: The suite's questions if already loaded (`suite.load()`).
        batch_size: Questions generated together.
        on_items: Progress callback (items finished, suite name).

    Raises:
        InvalidArgument: the data cannot be loaded or the rule is misconfigured.
    """
    started = time.monotonic()
    items = suite.load() if items is None else items
    use_chat = suite.apply_chat_template
    if use_chat is None:
        use_chat = has_chat_template(tokenizer)
    prompts = [render_prompt(tokenizer, item.question, use_chat) for item in items]

    def on_batch(n: int) -> None:
        if on_items is not None:
            on_items(n, suite.name)

    outputs = generate_greedy(
        model,
        tokenizer,
        prompts,
        max_new_tokens=suite.max_new_tokens,
        batch_size=batch_size,
        on_batch=on_batch,
    )
    result = qa_result(suite, items, [tokenizer.decode(prompt) for prompt in prompts], outputs)
    result.wall_seconds = time.monotonic() - started
    log.info(
        "%s: %d/%d correct in %.1f s",
        suite.name,
        sum(1 for row in result.items if row["correct"]),
        len(items),
        result.wall_seconds,
    )
    return result


def qa_result(
    suite: GenerationQaSuite,
    items: Sequence[QaItem],
    prompts: Sequence[str],
    outputs: Sequence[str],
) -> SuiteResult:
    """Matches every output and builds the suite's result (its wall time left to the caller).

    Args:
        suite: The suite (its matcher decides).
        items: The questions with their answers.
        prompts: The prompt text each question was sent as.
        outputs: The generated answer of each question.
    """
    result = SuiteResult(suite_name=suite.name)
    for item, prompt, output in zip(items, prompts, outputs, strict=True):
        result.items.append(
            {
                "source": item.source,
                "question": item.question,
                "prompt": prompt,
                "answers": list(item.answers),
                "output": output,
                "extracted": suite.matcher.extract(output),
                "correct": suite.matcher.matches(output, item.answers),
            }
        )
    correct = sum(1 for row in result.items if row["correct"])
    result.num_samples = len(items)
    result.metrics = {"accuracy": correct / len(items) if items else 0.0}
    return result
