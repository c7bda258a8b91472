"""Loading MMLU, C-Eval and CMMLU folders: real files parse, bad ones are named by file and line."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.evaluator.builtin import builtin_suite, builtin_suites
from forgeline.evaluator.multiple_choice_data import (
    MultipleChoiceFormat,
    list_subjects,
    load_subjects,
)

FIELD = "spec.suites[0].multiple_choice.dataset"


def test_mmlu_subject_loads_dev_and_test(mmlu_dir):
    (physics,) = load_subjects(mmlu_dir, MultipleChoiceFormat.MMLU, ["high_school_physics"])
    assert len(physics.dev) == 5
    assert len(physics.scored) == 151
    first = physics.scored[0]
    assert first.source == "test/high_school_physics_test.csv:1"
    assert first.subject == "high_school_physics"
    assert first.answer_letter in "ABCD"
    assert len(list_subjects(mmlu_dir, MultipleChoiceFormat.MMLU)) == 57


def test_ceval_val_is_scored_and_dev_explanations_are_ignored(ceval_dir):
    subjects = load_subjects(ceval_dir, MultipleChoiceFormat.CEVAL)
    assert len(subjects) == 52
    assert sum(len(s.scored) for s in subjects) == 1346
    accountant = next(s for s in subjects if s.subject == "accountant")
    assert accountant.scored[0].source == "val/accountant_val.csv:2"
    assert accountant.scored[0].answer_letter == "D"
    assert len(accountant.dev) == 5


def test_cmmlu_files_parse(cmmlu_dir):
    subjects = load_subjects(cmmlu_dir, MultipleChoiceFormat.CMMLU)
    assert len(subjects) == 67
    assert sum(len(s.scored) for s in subjects) == 11582
    agronomy = next(s for s in subjects if s.subject == "agronomy")
    assert agronomy.scored[0].choices[1] == "土地"
    assert agronomy.scored[0].answer_letter == "B"
    assert agronomy.dev[0].source == "dev/agronomy.csv:2"


def _copy_subject(mmlu_dir: Path, tmp_path: Path, subject: str, rows: int) -> Path:
    """A dataset folder holding one subject, its first rows rewritten one record per line."""
    root = tmp_path / "mmlu"
    (root / "dev").mkdir(parents=True)
    (root / "test").mkdir()
    shutil.copy(mmlu_dir / "dev" / f"{subject}_dev.csv", root / "dev")
    with open(mmlu_dir / "test" / f"{subject}_test.csv", encoding="utf-8", newline="") as fh:
        records = [r for r in csv.reader(fh) if not any("\n" in f for f in r)][:rows]
    with open(root / "test" / f"{subject}_test.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(records)
    return root


def test_row_missing_a_column_is_named_by_file_and_line(mmlu_dir, tmp_path):
    root = _copy_subject(mmlu_dir, tmp_path, "high_school_physics", 20)
    path = root / "test" / "high_school_physics_test.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    record = next(csv.reader([lines[16]]))
    lines[16] = ",".join(f'"{f}"' for f in record[:-1]) + "\r\n"
    path.write_text("".join(lines), encoding="utf-8", newline="")

    with pytest.raises(InvalidArgument) as err:
        load_subjects(root, MultipleChoiceFormat.MMLU, field=FIELD)
    (violation,) = err.value.violations
    assert violation.field == FIELD
    assert violation.description == (
        "test/high_school_physics_test.csv:17: expected 6 columns, got 5"
    )


def test_line_numbers_count_quoted_newlines(tmp_path):
    root = tmp_path / "mmlu"
    (root / "test").mkdir(parents=True)
    (root / "test" / "x_test.csv").write_text(
        '"two\nlines",a,b,c,d,A\nq,a,b,c,d,E\n', encoding="utf-8"
    )
    with pytest.raises(InvalidArgument, match=r"test/x_test.csv:3: answer must be one of"):
        load_subjects(root, MultipleChoiceFormat.MMLU)


def test_missing_header_column_is_named(ceval_dir, tmp_path):
    root = tmp_path / "ceval"
    (root / "val").mkdir(parents=True)
    source = (ceval_dir / "val" / "accountant_val.csv").read_text(encoding="utf-8")
    header, rest = source.split("\n", 1)
    assert header.strip() == "id,question,A,B,C,D,answer"
    (root / "val" / "accountant_val.csv").write_text(
        "id,question,A,B,C,D,solution\n" + rest, encoding="utf-8"
    )
    with pytest.raises(InvalidArgument) as err:
        load_subjects(root, MultipleChoiceFormat.CEVAL, field=FIELD)
    assert err.value.violations[0].field == FIELD
    assert "val/accountant_val.csv:1: missing column(s) answer" in str(err.value)


def test_unknown_subject_names_the_available_ones(mmlu_dir):
    with pytest.raises(InvalidArgument) as err:
        load_subjects(
            mmlu_dir,
            MultipleChoiceFormat.MMLU,
            ["astronomy", "quantum_cooking"],
            subjects_field="spec.suites[0].multiple_choice.subjects",
        )
    (violation,) = err.value.violations
    assert violation.field == "spec.suites[0].multiple_choice.subjects"
    assert violation.description.startswith("unknown subject(s) quantum_cooking; available: ")
    assert "abstract_algebra, anatomy, astronomy" in violation.description


def test_folder_without_the_scored_split_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="no val/ folder"):
        load_subjects(tmp_path, MultipleChoiceFormat.CEVAL, field=FIELD)


def test_builtin_mmlu_mini_is_a_small_mmlu_folder():
    suites = builtin_suites()
    assert set(suites) == {"mmlu-mini", "gsm8k-mini"}
    mini = suites["mmlu-mini"]
    subjects = load_subjects(mini.path, mini.format)
    assert [s.subject for s in subjects] == [
        "abstract_algebra",
        "conceptual_physics",
        "high_school_geography",
        "marketing",
        "world_religions",
    ]
    assert all(len(s.dev) == 5 and len(s.scored) == 30 for s in subjects)
    for name in ("mmlu-mini", "gsm8k-mini"):
        folder = suites[name].path if suites[name].path.is_dir() else suites[name].path.parent
        assert (folder / "PROVENANCE.md").is_file()
        assert (folder / "LICENSE").is_file()


def test_builtin_rows_are_the_first_rows_of_the_source(mmlu_dir):
    mini = builtin_suite("mmlu-mini")
    for subject in load_subjects(mini.path, mini.format):
        mini_file = mini.path / "test" / f"{subject.subject}_test.csv"
        source = mmlu_dir / "test" / mini_file.name
        data = mini_file.read_bytes()
        assert source.read_bytes()[: len(data)] == data


def test_unknown_builtin_is_refused_with_the_list():
    with pytest.raises(InvalidArgument, match=r"available: gsm8k-mini, mmlu-mini"):
        builtin_suite("mmlu-max", field="spec.suites[0].multiple_choice.builtin")
