"""Reading dataset files: JSON Lines, JSON arrays, CSV and Parquet, record by record.

Each reader yields `(line, record)` pairs, the line being where the record starts (the
row number for Parquet), and reports what it cannot read to a `ProblemSink` instead of
raising, so one bad line does not hide the problems of the others.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forgeline.trainer.data.records import ProblemSink

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


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


def read_records(path: Path, label: str, sink: ProblemSink) -> Iterator[tuple[int, Any]]:
    """Yields (line, record) pairs of one data file; unreadable records are reported and skipped.

    Args:
        path: The data file; its suffix picks the reader.
        label: Name used for the file in problems.
        sink: Where problems go.
    """
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path, label, sink)
    elif suffix == ".json":
        yield from _read_json(path, label, sink)
    elif suffix == ".csv":
        yield from _read_csv(path)
    elif suffix == ".parquet":
        yield from _read_parquet(path)
    else:
        sink.add(label, 0, "", f"unsupported file type {suffix!r}; use {', '.join(SUFFIXES)}")


def _read_jsonl(path: Path, label: str, sink: ProblemSink) -> Iterator[tuple[int, Any]]:
    """Reads one JSON value per line; blank lines are skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                sink.add(label, number, "", f"not valid JSON: {exc.msg} (column {exc.colno})")


def _read_json(path: Path, label: str, sink: ProblemSink) -> Iterator[tuple[int, Any]]:
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
    # Lines are counted on from the previous record, which keeps a large array linear.
    line, counted = 1, 0
    while pos < len(text):
        line += text.count("\n", counted, pos)
        counted = pos
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
            line += text.count("\n", counted, pos)
            sink.add(label, line, "", "expected ',' or ']' between records")
            return


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    """Reads rows as dicts; a row's line is where it starts (quoted fields may span lines)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        start = 2
        for row in reader:
            yield start, {k: v for k, v in row.items() if k is not None}
            start = reader.line_num + 1


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    """Reads rows as dicts, numbered from 1 (pyarrow is imported only when needed)."""
    import pyarrow.parquet as pq

    yield from enumerate(pq.read_table(path).to_pylist(), start=1)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
