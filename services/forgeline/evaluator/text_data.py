"""JSON-lines datasets of the evaluator: questions with answers, and plain text.

A dataset is a `.jsonl` file, or a folder whose `*.jsonl` files are read in name order (a
pulled DATASET version). Each line is one JSON object; blank lines are skipped. Problems are
reported as `InvalidArgument` on the caller's field, naming file and line
(`test.jsonl:12: no "answer" or "answers"`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.client import exceptions


@dataclass(frozen=True)
class QaItem:
    """One question and its accepted answers.

    Attributes:
        question: The question text.
        answers: Reference answers; an output matching any one is correct.
        source: `file.jsonl:line` where it came from.
    """

    question: str
    answers: tuple[str, ...]
    source: str


def dataset_files(path: Path, *, field: str = "dataset") -> list[Path]:
    """The `.jsonl` files of a dataset: the file itself, or a folder's files in name order.

    Raises:
        InvalidArgument: the path does not exist or holds no `.jsonl` file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise exceptions.InvalidArgument(field, f"dataset not found at {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".jsonl")
    if not files:
        raise exceptions.InvalidArgument(field, "the dataset holds no .jsonl file")
    return files


def load_qa(path: Path, *, limit: int = 0, field: str = "dataset") -> list[QaItem]:
    """Reads questions with `answer` (a string or number) or `answers` (a list of them).

    Args:
        path: A `.jsonl` file or a folder of them.
        limit: Items to read; 0 for all.
        field: Field named in errors.

    Raises:
        InvalidArgument: a line is not a JSON object, lacks a question or its answers, or the
            dataset has no item.
    """
    items = []
    for record, source in _records(path, field):
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise exceptions.InvalidArgument(field, f'{source}: no "question" text')
        answers = _answers(record, source, field)
        items.append(QaItem(question, answers, source))
        if limit and len(items) >= limit:
            break
    if not items:
        raise exceptions.InvalidArgument(field, "the dataset holds no question")
    return items


def load_texts(path: Path, *, limit: int = 0, field: str = "dataset") -> list[str]:
    """Reads the `text` field of every line.

    Raises:
        InvalidArgument: a line is not a JSON object or has no `text` string, or the dataset
            has no document.
    """
    texts = []
    for record, source in _records(path, field):
        text = record.get("text")
        if not isinstance(text, str):
            raise exceptions.InvalidArgument(field, f'{source}: no "text" string')
        texts.append(text)
        if limit and len(texts) >= limit:
            break
    if not texts:
        raise exceptions.InvalidArgument(field, "the dataset holds no text")
    return texts


def _answers(record: dict[str, Any], source: str, field: str) -> tuple[str, ...]:
    if "answers" in record:
        raw = record["answers"]
        if not isinstance(raw, list) or not raw:
            raise exceptions.InvalidArgument(field, f'{source}: "answers" must be a non-empty list')
    elif "answer" in record:
        raw = [record["answer"]]
    else:
        raise exceptions.InvalidArgument(field, f'{source}: no "answer" or "answers"')
    answers = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise exceptions.InvalidArgument(
                field, f"{source}: answers must be strings or numbers, got {value!r}"
            )
        answers.append(str(value))
    return tuple(answers)


def _records(path: Path, field: str) -> Iterator[tuple[dict[str, Any], str]]:
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    for file in dataset_files(path, field=field):
        name = file.relative_to(root).as_posix()
        try:
            with open(file, encoding="utf-8-sig") as fh:
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    source = f"{name}:{number}"
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise exceptions.InvalidArgument(
                            field, f"{source}: not valid JSON ({err.msg})"
                        ) from None
                    if not isinstance(record, dict):
                        raise exceptions.InvalidArgument(field, f"{source}: not a JSON object")
                    yield record, source
        except UnicodeDecodeError as err:
            raise exceptions.InvalidArgument(
                field, f"{name}: not UTF-8 text ({err.reason})"
            ) from None
