"""Tokenizing canonical examples: chat templates, assistant-only labels, preference pairs.

Conversations are rendered with the tokenizer's own chat template (ChatML when it ships
none), and every token that is not part of an assistant turn gets `IGNORE_INDEX`, so SFT
puts its loss on the answers only. The tokenizer is passed in; nothing here imports
transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from forgeline.trainer.data.records import Conversation, Example, Preference, Text

IGNORE_INDEX = -100

# A ChatML template for tokenizers that ship none (base models).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Tokenized:
    """One tokenized training sequence; `labels` is IGNORE_INDEX where no loss is taken."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class TokenizedPair:
    """A tokenized preference pair: shared prompt, then each answer."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def ensure_chat_template(tokenizer: Any) -> None:
    """Gives a tokenizer without a chat template the ChatML one."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_spans(
    tokenizer: Any, messages: Sequence[dict[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """Renders a conversation and finds the character span of every assistant answer.

    Each span runs from the end of the rendered prefix with its generation prompt to the
    end of the rendered prefix including the answer, so it covers the answer and the
    template's end-of-turn marker (the model learns to stop).
    """
    text = _render(tokenizer, messages, False)
    spans = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True)
        upto = _render(tokenizer, messages[: i + 1], False)
        if text.startswith(before) and text.startswith(upto):
            spans.append((len(before), len(upto)))
            cursor = len(upto)
        else:
            # Templates that rewrite earlier turns: locate the answer text itself.
            start = text.find(message["content"], cursor)
            if start < 0:
                continue
            spans.append((start, start + len(message["content"])))
            cursor = start + len(message["content"])
    return text, spans


def tokenize_conversation(tokenizer: Any, example: Conversation, max_length: int) -> Tokenized:
    """Tokenizes a chat with labels on the assistant turns only, truncated to `max_length`."""
    text, spans = assistant_spans(tokenizer, example.messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for i, (start, end) in enumerate(enc["offset_mapping"]):
        if end > start and any(s <= start < e for s, e in spans):
            labels[i] = ids[i]
    return Tokenized(ids[:max_length], labels[:max_length])


def tokenize_text(tokenizer: Any, example: Text, max_length: int) -> list[Tokenized]:
    """Tokenizes a document (with EOS) into chunks of `max_length`, loss on every token."""
    ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False):
        ids = [tokenizer.bos_token_id, *ids]
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    return [
        Tokenized(ids[i : i + max_length], ids[i : i + max_length])
        for i in range(0, len(ids), max_length)
        if len(ids[i : i + max_length]) > 1
    ]


def tokenize_preference(tokenizer: Any, example: Preference, max_length: int) -> TokenizedPair:
    """Tokenizes a preference pair; the prompt is cut from the left when a pair is too long."""
    prompt_text = _render(tokenizer, example.prompt, True)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    answers = []
    for answer in (example.chosen, example.rejected):
        full = _render(
            tokenizer, [*example.prompt, {"role": "assistant", "content": answer}], False
        )
        completion = full[len(prompt_text) :] if full.startswith(prompt_text) else answer
        answers.append(tokenizer(completion, add_special_tokens=False)["input_ids"])
    longest = max(len(a) for a in answers)
    answer_budget = (
        min(longest, max_length // 2) if len(prompt_ids) + longest > max_length else longest
    )
    keep_prompt = max(1, max_length - answer_budget)
    prompt_ids = prompt_ids[-keep_prompt:]
    room = max_length - len(prompt_ids)
    return TokenizedPair(prompt_ids, answers[0][:room], answers[1][:room])


def tokenize_dataset(tokenizer: Any, examples: Sequence[Example], max_length: int) -> list:
    """Tokenizes canonical examples: `Tokenized` for SFT and text, `TokenizedPair` for DPO."""
    ensure_chat_template(tokenizer)
    out: list = []
    for example in examples:
        if isinstance(example, Conversation):
            item = tokenize_conversation(tokenizer, example, max_length)
            if any(label != IGNORE_INDEX for label in item.labels):
                out.append(item)
        elif isinstance(example, Text):
            out.extend(tokenize_text(tokenizer, example, max_length))
        else:
            out.append(tokenize_preference(tokenizer, example, max_length))
    return out


def count_tokens(items: Sequence[Any]) -> int:
    """Tokens in tokenized items (both answers of a pair count with the prompt twice)."""
    total = 0
    for item in items:
        if isinstance(item, Tokenized):
            total += len(item.input_ids)
        elif isinstance(item, TokenizedPair):
            total += 2 * len(item.prompt_ids) + len(item.chosen_ids) + len(item.rejected_ids)
        else:
            total += len(item["input_ids"])
    return total


def row_length(item: Any) -> int:
    """Tokens one item occupies in a batch row (a pair: the prompt and its longer answer)."""
    if isinstance(item, Tokenized):
        return len(item.input_ids)
    if isinstance(item, TokenizedPair):
        return len(item.prompt_ids) + max(len(item.chosen_ids), len(item.rejected_ids))
    return len(item["input_ids"])
