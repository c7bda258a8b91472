"""Training data: reading files, detecting and validating record formats, and tokenizing.

Datasets are JSON Lines, JSON arrays, CSV or Parquet files. Each record is checked against
its format (detected from the first record's fields unless given) and turned into one of
three canonical forms: a chat `Conversation`, a plain `Text`, or a `Preference` pair.
Every problem names the file, the line (or row) and the field, and all problems are
reported together, up to `MAX_PROBLEMS`.

Tokenizing renders conversations with the tokenizer's own chat template and masks every
token that is not part of an assistant turn, so SFT puts its loss on the answers only.
This module reads files with the standard library; torch and transformers are only
needed by the tokenizing functions, which import them lazily.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgeline.trainer.config import FORMATS_FOR_TASK, DataFormat, Task

log = logging.getLogger(__name__)

MAX_PROBLEMS = 20
IGNORE_INDEX = -100
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

# ShareGPT speaker names -> chat roles.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}
_CHAT_ROLES = frozenset({"system", "user", "assistant"})

# A ChatML template for tokenizers that ship none (base models).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# -- canonical records ----------------------------------------------------------------------


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


class _Collector:
    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def add(self, file: str, line: int, field_name: str, message: str) -> None:
        if len(self.dataset.problems) < MAX_PROBLEMS:
            self.dataset.problems.append(Problem(file, line, field_name, message))
        else:
            self.dataset.more_problems += 1


# -- reading files --------------------------------------------------------------------------


def dataset_files(path: Path) -> list[Path]:
    """The data files of a dataset: `path` itself, or the supported files under a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
    )


def _read_records(path: Path, label: str, sink: _Collector) -> Iterator[tuple[int, Any]]:
    """Yields (line, record) pairs; unreadable records are reported and skipped."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path, label, sink)
    elif suffix == ".json":
        yield from _read_json(path, label, sink)
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            start = 2
            for row in reader:
                yield start, {k: v for k, v in row.items() if k is not None}
                start = reader.line_num + 1
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row
    else:
        sink.add(label, 0, "", f"unsupported file type {suffix!r}; use {', '.join(SUFFIXES)}")


def _read_jsonl(path: Path, label: str, sink: _Collector) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                sink.add(label, number, "", f"not valid JSON: {exc.msg} (column {exc.colno})")


def _read_json(path: Path, label: str, sink: _Collector) -> Iterator[tuple[int, Any]]:
    """Reads a JSON array element by element, keeping each element's line number."""
    text = path.read_text(encoding="utf-8", errors="replace")
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            sink.add(label, exc.lineno, "", f"not valid JSON: {exc.msg} (column {exc.colno})")
            return
        if (
            isinstance(value, dict)
            and len(value) == 1
            and isinstance(next(iter(value.values())), list)
        ):
            # {"data": [...]}: one top-level key holding the records.
            yield from enumerate(next(iter(value.values())), start=1)
            return
        sink.add(label, 1, "", "a .json dataset must be an array of records (or use .jsonl)")
        return
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while pos < len(text):
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            sink.add(label, exc.lineno, "", f"not valid JSON: {exc.msg} (column {exc.colno})")
            return
        yield line, value
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            line = text.count("\n", 0, pos) + 1
            sink.add(label, line, "", "expected ',' or ']' between records")
            return


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# -- formats --------------------------------------------------------------------------------


def detect_format(record: Any) -> DataFormat | None:
    """Guesses a record's format from its fields; None when nothing matches."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if "messages" in keys:
        return DataFormat.MESSAGES
    if "conversations" in keys:
        if {"chosen", "rejected"} <= keys:
            return DataFormat.SHAREGPT_PREFERENCE
        return DataFormat.SHAREGPT
    if {"chosen", "rejected"} <= keys:
        return DataFormat.PREFERENCE
    if "instruction" in keys and "output" in keys:
        return DataFormat.ALPACA
    if "query" in keys and "response" in keys:
        return DataFormat.QUERY_RESPONSE
    if "text" in keys:
        return DataFormat.TEXT
    return None


_FIELDS_HINT = {
    DataFormat.MESSAGES: "`messages`",
    DataFormat.ALPACA: "`instruction`, `output` (and optional `input`)",
    DataFormat.SHAREGPT: "`conversations`",
    DataFormat.QUERY_RESPONSE: "`query`, `response`",
    DataFormat.TEXT: "`text`",
    DataFormat.PREFERENCE: "`prompt`, `chosen`, `rejected`",
    DataFormat.SHAREGPT_PREFERENCE: "`conversations`, `chosen`, `rejected`",
}


class _Record:
    """Field access on one record that reports problems with file, line and field path."""

    def __init__(self, data: dict, file: str, line: int, sink: _Collector):
        self.data, self.file, self.line, self.sink = data, file, line, sink
        self.bad = False

    def problem(self, path: str, message: str) -> None:
        self.bad = True
        self.sink.add(self.file, self.line, path, message)

    def string(self, key: str, *, required: bool = True, empty_ok: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(key, "missing")
            return ""
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {type(value).__name__}")
            return ""
        if not empty_ok and required and not value.strip():
            self.problem(key, "is empty")
        return value

    def messages(self, key: str, value: Any, *, sharegpt: bool) -> list[dict[str, str]]:
        """Validates a list of chat turns (`{role, content}` or ShareGPT `{from, value}`)."""
        if not isinstance(value, list) or not value:
            self.problem(key, "must be a non-empty list of turns")
            return []
        role_key, content_key = ("from", "value") if sharegpt else ("role", "content")
        out = []
        for i, turn in enumerate(value):
            path = f"{key}[{i}]"
            if not isinstance(turn, dict):
                self.problem(path, f"must be an object with `{role_key}` and `{content_key}`")
                continue
            role = turn.get(role_key)
            content = turn.get(content_key)
            if sharegpt:
                mapped = _SHAREGPT_ROLES.get(str(role).lower()) if isinstance(role, str) else None
                if mapped is None:
                    self.problem(
                        f"{path}.{role_key}",
                        f"unknown speaker {role!r}; use human, gpt or system",
                    )
                    continue
                role = mapped
            elif role not in _CHAT_ROLES:
                self.problem(
                    f"{path}.{role_key}", f"unknown role {role!r}; use system, user or assistant"
                )
                continue
            if not isinstance(content, str):
                self.problem(
                    f"{path}.{content_key}",
                    "missing"
                    if content is None
                    else f"must be a string, got {type(content).__name__}",
                )
                continue
            out.append({"role": role, "content": content})
        return out


def _conversation_checks(rec: _Record, key: str, messages: list[dict[str, str]]) -> None:
    if rec.bad:
        return
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        rec.problem(key, "has no assistant turn with content to learn from")
    for i, m in enumerate(messages):
        if m["role"] == "system" and i != 0:
            rec.problem(f"{key}[{i}].role", "a system turn must come first")


def _history(rec: _Record) -> list[dict[str, str]]:
    history = rec.data.get("history")
    if history is None:
        return []
    out = []
    if not isinstance(history, list):
        rec.problem("history", "must be a list of [query, response] pairs")
        return []
    for i, pair in enumerate(history):
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(x, str) for x in pair)
        ):
            rec.problem(f"history[{i}]", "must be a [query, response] pair of strings")
            continue
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out


def _system(rec: _Record) -> list[dict[str, str]]:
    system = rec.string("system", required=False)
    return [{"role": "system", "content": system}] if system else []


def _parse(fmt: DataFormat, rec: _Record) -> Example | None:
    """Turns a record of format `fmt` into its canonical example, or None if it is invalid."""
    d = rec.data
    if fmt is DataFormat.MESSAGES:
        msgs = rec.messages("messages", d.get("messages"), sharegpt=False)
        _conversation_checks(rec, "messages", msgs)
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.SHAREGPT:
        msgs = _system(rec) + rec.messages("conversations", d.get("conversations"), sharegpt=True)
        _conversation_checks(rec, "conversations", msgs)
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.ALPACA:
        instruction = rec.string("instruction")
        extra = rec.string("input", required=False)
        output = rec.string("output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        msgs = [
            *_system(rec),
            *_history(rec),
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": output},
        ]
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.QUERY_RESPONSE:
        query = rec.string("query")
        response = rec.string("response")
        msgs = [
            *_system(rec),
            *_history(rec),
            {"role": "user", "content": query},
            {"role": "assistant", "content": response},
        ]
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.TEXT:
        text = rec.string("text")
        return None if rec.bad else Text(text)
    if fmt is DataFormat.PREFERENCE:
        prompt = _prompt_messages(rec, d.get("prompt"))
        chosen = _answer(rec, "chosen", d.get("chosen"), sharegpt=False)
        rejected = _answer(rec, "rejected", d.get("rejected"), sharegpt=False)
        if not rec.bad and chosen == rejected:
            rec.problem("rejected", "is identical to `chosen`; a pair must differ")
        return None if rec.bad else Preference(tuple(_system(rec) + prompt), chosen, rejected)
    if fmt is DataFormat.SHAREGPT_PREFERENCE:
        prompt = _system(rec) + rec.messages("conversations", d.get("conversations"), sharegpt=True)
        if prompt and prompt[-1]["role"] != "user" and not rec.bad:
            rec.problem("conversations", "must end with a human turn (the prompt)")
        chosen = _answer(rec, "chosen", d.get("chosen"), sharegpt=True)
        rejected = _answer(rec, "rejected", d.get("rejected"), sharegpt=True)
        if not rec.bad and chosen == rejected:
            rec.problem("rejected", "is identical to `chosen`; a pair must differ")
        return None if rec.bad else Preference(tuple(prompt), chosen, rejected)
    raise AssertionError(fmt)


def _prompt_messages(rec: _Record, value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            rec.problem("prompt", "is empty")
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        msgs = rec.messages("prompt", value, sharegpt=False)
        if msgs and msgs[-1]["role"] != "user":
            rec.problem("prompt", "must end with a user turn")
        return msgs
    rec.problem("prompt", "missing" if value is None else "must be a string or a list of messages")
    return []


def _answer(rec: _Record, key: str, value: Any, *, sharegpt: bool) -> str:
    """An answer given as a string, one turn, or a list ending with one assistant turn."""
    if isinstance(value, str):
        if not value.strip():
            rec.problem(key, "is empty")
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        msgs = rec.messages(key, value, sharegpt=sharegpt)
        if msgs and msgs[-1]["role"] != "assistant":
            rec.problem(key, "must be an assistant turn")
        return msgs[-1]["content"] if msgs else ""
    rec.problem(key, "missing" if value is None else "must be a string or an assistant turn")
    return ""


def load_dataset(
    path: Path,
    task: Task,
    fmt: DataFormat = DataFormat.AUTO,
    *,
    label: str | None = None,
    limit: int | None = None,
) -> Dataset:
    """Reads and validates every record of a dataset file or folder.

    Args:
        path: A data file, or a folder of them (a pulled DATASET version).
        task: What the data will train; decides which formats are acceptable.
        fmt: The records' format; AUTO detects it from the first record.
        label: Name used for the file in problems (default: the file's name).
        limit: Stop after this many records (for quick inspection).

    Returns:
        The dataset with its examples and every problem found (up to `MAX_PROBLEMS`).
    """
    dataset = Dataset(format=fmt)
    sink = _Collector(dataset)
    files = dataset_files(path)
    if not files:
        sink.add(label or Path(path).name, 0, "", f"no data file ({', '.join(SUFFIXES)}) found")
        return dataset
    allowed = FORMATS_FOR_TASK[task]
    for file in files:
        name = label if (label and len(files) == 1) else file.name
        for line, record in _read_records(file, name, sink):
            if limit is not None and dataset.records >= limit:
                return dataset
            dataset.records += 1
            if not isinstance(record, dict):
                sink.add(
                    name, line, "", f"a record must be a JSON object, got {type(record).__name__}"
                )
                continue
            if dataset.format is DataFormat.AUTO:
                detected = detect_format(record)
                if detected is None:
                    hints = "; ".join(f"{f.name}: {_FIELDS_HINT[f]}" for f in sorted(allowed))
                    sink.add(
                        name,
                        line,
                        "",
                        f"cannot tell the format from fields {sorted(record)}; "
                        f"for {task.name} give one of {hints}",
                    )
                    return dataset
                if detected not in allowed:
                    expected = " or ".join(_FIELDS_HINT[f] for f in sorted(allowed))
                    sink.add(
                        name,
                        line,
                        "",
                        f"records are {detected.name} ({_FIELDS_HINT[detected]}), which cannot "
                        f"train {task.name}; it needs {expected}",
                    )
                    return dataset
                dataset.format = detected
            example = _parse(dataset.format, _Record(record, name, line, sink))
            if example is not None:
                dataset.examples.append(example)
    if dataset.records == 0:
        sink.add(label or files[0].name, 0, "", "the dataset has no records")
    return dataset


# -- tokenizing -----------------------------------------------------------------------------


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


def pack(sequences: Sequence[Tokenized], max_length: int) -> list[dict[str, list[int]]]:
    """Packs sequences into rows of up to `max_length` tokens, best fit decreasing.

    Each row carries `position_ids` that restart at 0 for every sequence; with no
    attention mask, transformers reads those as sequence boundaries and keeps attention
    inside each sequence, so packing changes throughput, not what the model sees.
    """
    rows: list[list[Tokenized]] = []
    room: list[int] = []
    for seq in sorted(sequences, key=lambda s: len(s.input_ids), reverse=True):
        n = len(seq.input_ids)
        best = -1
        for i, free in enumerate(room):
            if n <= free and (best < 0 or free < room[best]):
                best = i
        if best < 0:
            rows.append([seq])
            room.append(max_length - n)
        else:
            rows[best].append(seq)
            room[best] -= n
    packed = []
    for row in rows:
        ids, labels, positions = [], [], []
        for seq in row:
            ids += seq.input_ids
            # The first token of each sequence has no prediction target from the previous one.
            labels += [IGNORE_INDEX, *seq.labels[1:]]
            positions += list(range(len(seq.input_ids)))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return packed


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
