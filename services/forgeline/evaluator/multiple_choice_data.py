"""Multiple-choice datasets in the MMLU, C-Eval and CMMLU folder layouts, loaded by subject.

A dataset is a folder (a registry DATASET version is pulled to one) holding a few-shot split
`dev` and a scored split, one CSV file per subject:

- MMLU (hendrycks): scores `test/<subject>_test.csv`, shots from `dev/<subject>_dev.csv`;
  no header, columns question, A, B, C, D, answer.
- C-Eval: scores `val/<subject>_val.csv`, shots from `dev/<subject>_dev.csv`; header
  `id,question,A,B,C,D,answer` (`dev` adds `explanation`).
- CMMLU: scores `test/<subject>.csv`, shots from `dev/<subject>.csv`; header
  `,Question,A,B,C,D,Answer`.

Every problem is reported as an `InvalidArgument` on the caller's field, its description
naming the file (relative to the dataset folder) and the line, e.g.
`test/high_school_physics_test.csv:17: expected 6 columns, got 5`.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from forgeline.client import exceptions

LETTERS = ("A", "B", "C", "D")


class MultipleChoiceFormat(enum.StrEnum):
    """Column and folder layout of a multiple-choice dataset."""

    MMLU = "mmlu"
    CEVAL = "ceval"
    CMMLU = "cmmlu"


@dataclass(frozen=True)
class _Layout:
    """Where one format keeps its splits and which columns it has."""

    scored_split: str
    # File name of a subject's file in a split; `{split}` is the split's folder name.
    file_pattern: str
    # Header names of question, A, B, C, D, answer; None for a headerless file.
    columns: tuple[str, ...] | None


_LAYOUTS = {
    MultipleChoiceFormat.MMLU: _Layout("test", "{subject}_{split}.csv", None),
    MultipleChoiceFormat.CEVAL: _Layout(
        "val", "{subject}_{split}.csv", ("question", "A", "B", "C", "D", "answer")
    ),
    MultipleChoiceFormat.CMMLU: _Layout(
        "test", "{subject}.csv", ("Question", "A", "B", "C", "D", "Answer")
    ),
}
FEW_SHOT_SPLIT = "dev"
_MMLU_COLUMNS = 6


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One question with four options.

    Attributes:
        subject: The subject it belongs to, e.g. `high_school_physics`.
        question: The question text as in the file.
        choices: Options A-D as in the file.
        answer: Index (0-3) of the correct option.
        source: `split/file.csv:line` where the row starts.
    """

    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int
    source: str

    @property
    def answer_letter(self) -> str:
        """The correct option's letter."""
        return LETTERS[self.answer]


@dataclass(frozen=True)
class SubjectData:
    """One subject: its solved few-shot examples (file order) and its scored questions."""

    subject: str
    dev: tuple[MultipleChoiceItem, ...]
    scored: tuple[MultipleChoiceItem, ...]


def scored_split(fmt: MultipleChoiceFormat) -> str:
    """Name of the split a format scores (`test`, or `val` for C-Eval)."""
    return _LAYOUTS[fmt].scored_split


def list_subjects(folder: Path, fmt: MultipleChoiceFormat, *, field: str = "dataset") -> list[str]:
    """Subjects present in a dataset folder: those with a file in the scored split, sorted.

    Raises:
        InvalidArgument: the folder has no scored split or no subject file in it.
    """
    layout = _LAYOUTS[fmt]
    split_dir = Path(folder) / layout.scored_split
    if not split_dir.is_dir():
        raise exceptions.InvalidArgument(
            field, f"no {layout.scored_split}/ folder in the {fmt.value} dataset"
        )
    suffix = layout.file_pattern.format(subject="", split=layout.scored_split)
    subjects = sorted(
        p.name[: -len(suffix)]
        for p in split_dir.iterdir()
        if p.is_file() and p.name.endswith(suffix) and len(p.name) > len(suffix)
    )
    if not subjects:
        raise exceptions.InvalidArgument(
            field, f"no *{suffix} file in {layout.scored_split}/ of the {fmt.value} dataset"
        )
    return subjects


def load_subjects(
    folder: Path,
    fmt: MultipleChoiceFormat,
    subjects: Sequence[str] = (),
    *,
    field: str = "dataset",
    subjects_field: str = "subjects",
) -> list[SubjectData]:
    """Loads subjects (all when `subjects` is empty) with their `dev` examples.

    A subject without a `dev` file gets no few-shot examples; asking for more than a subject
    has is the scorer's concern (it uses what there is).

    Args:
        folder: The dataset folder.
        fmt: Its layout.
        subjects: Subjects to load, in the order given; empty loads every subject, sorted.
        field: Field named in errors about the data.
        subjects_field: Field named when a requested subject does not exist.

    Raises:
        InvalidArgument: an unknown subject (naming the available ones), a missing folder,
            or a malformed file (naming file and line).
    """
    available = list_subjects(folder, fmt, field=field)
    unknown = [s for s in subjects if s not in available]
    if unknown:
        raise exceptions.InvalidArgument(
            subjects_field,
            f"unknown subject(s) {', '.join(unknown)}; available: {', '.join(available)}",
        )
    layout = _LAYOUTS[fmt]
    result = []
    for subject in subjects or available:
        dev_path = Path(folder) / FEW_SHOT_SPLIT / _file_name(layout, subject, FEW_SHOT_SPLIT)
        dev = (
            read_subject_file(folder, dev_path, fmt, subject, field=field)
            if dev_path.is_file()
            else ()
        )
        scored_path = Path(folder) / layout.scored_split
        scored_path /= _file_name(layout, subject, layout.scored_split)
        scored = read_subject_file(folder, scored_path, fmt, subject, field=field)
        result.append(SubjectData(subject, tuple(dev), tuple(scored)))
    return result


def read_subject_file(
    root: Path, path: Path, fmt: MultipleChoiceFormat, subject: str, *, field: str = "dataset"
) -> list[MultipleChoiceItem]:
    """Parses one subject file; every row must be complete with an answer letter A-D.

    Args:
        root: The dataset folder (error messages name `path` relative to it).
        path: The CSV file.
        fmt: Its layout.
        subject: The subject its items belong to.
        field: Field named in errors.

    Raises:
        InvalidArgument: the file cannot be read or a row is malformed (file:line).
    """
    try:
        name = path.relative_to(root).as_posix()
    except ValueError:
        name = path.name
    items = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = _rows(fh)
            if _LAYOUTS[fmt].columns is None:
                items = _headerless(rows, name, subject, field)
            else:
                items = _with_header(rows, name, subject, field, _LAYOUTS[fmt].columns)
    except UnicodeDecodeError as err:
        raise exceptions.InvalidArgument(field, f"{name}: not UTF-8 text ({err.reason})") from None
    except csv.Error as err:
        raise exceptions.InvalidArgument(field, f"{name}: malformed CSV ({err})") from None
    if not items:
        raise exceptions.InvalidArgument(field, f"{name}: no questions")
    return items


def _file_name(layout: _Layout, subject: str, split: str) -> str:
    return layout.file_pattern.format(subject=subject, split=split)


def _rows(fh) -> Iterator[tuple[int, list[str]]]:
    """Yields (line where the record starts, fields); quoted fields may span lines."""
    reader = csv.reader(fh)
    start = 1
    for row in reader:
        yield start, row
        start = reader.line_num + 1


def _headerless(rows, name: str, subject: str, field: str) -> list[MultipleChoiceItem]:
    items = []
    for line, row in rows:
        if not row:
            continue
        if len(row) != _MMLU_COLUMNS:
            raise exceptions.InvalidArgument(
                field, f"{name}:{line}: expected {_MMLU_COLUMNS} columns, got {len(row)}"
            )
        items.append(_item(row, name, line, subject, field))
    return items


def _with_header(
    rows, name: str, subject: str, field: str, columns: tuple[str, ...]
) -> list[MultipleChoiceItem]:
    header_line, header = next(rows, (1, []))
    missing = [c for c in columns if c not in header]
    if missing:
        raise exceptions.InvalidArgument(
            field,
            f"{name}:{header_line}: missing column(s) {', '.join(missing)} "
            f"(expected a header with {','.join(columns)})",
        )
    positions = [header.index(c) for c in columns]
    items = []
    for line, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise exceptions.InvalidArgument(
                field, f"{name}:{line}: expected {len(header)} columns, got {len(row)}"
            )
        items.append(_item([row[i] for i in positions], name, line, subject, field))
    return items


def _item(row: list[str], name: str, line: int, subject: str, field: str) -> MultipleChoiceItem:
    question, a, b, c, d, answer = row
    letter = answer.strip()
    if letter not in LETTERS:
        raise exceptions.InvalidArgument(
            field, f"{name}:{line}: answer must be one of A, B, C, D, got {answer!r}"
        )
    if not question.strip():
        raise exceptions.InvalidArgument(field, f"{name}:{line}: empty question")
    return MultipleChoiceItem(
        subject=subject,
        question=question,
        choices=(a, b, c, d),
        answer=LETTERS.index(letter),
        source=f"{name}:{line}",
    )
