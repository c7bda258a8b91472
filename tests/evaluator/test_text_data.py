"""QA and text JSONL datasets: answers required, errors named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.evaluator.builtin import builtin_suite
from forgeline.evaluator.text_data import load_qa, load_texts

FIELD = "spec.suites[1].generation_qa.dataset"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_answer_and_answers_are_both_accepted(tmp_path):
    path = _write(
        tmp_path / "qa.jsonl",
        [
            json.dumps({"question": "Capital of France?", "answer": "Paris"}),
            "",
            json.dumps({"question": "2+2?", "answers": ["4", 4.0]}),
            json.dumps({"question": "Year?", "answer": 1969}),
        ],
    )
    items = load_qa(path)
    assert [i.answers for i in items] == [("Paris",), ("4", "4.0"), ("1969",)]
    assert items[1].source == "qa.jsonl:3"
    assert len(load_qa(path, limit=2)) == 2


def test_a_file_without_answers_is_refused(tmp_path):
    path = _write(
        tmp_path / "qa.jsonl",
        [json.dumps({"question": "Capital of France?"}), json.dumps({"question": "2+2?"})],
    )
    with pytest.raises(InvalidArgument) as err:
        load_qa(path, field=FIELD)
    (violation,) = err.value.violations
    assert violation.field == FIELD
    assert violation.description == 'qa.jsonl:1: no "answer" or "answers"'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "qa.jsonl:2: not valid JSON"),
        ("[1, 2]", "qa.jsonl:2: not a JSON object"),
        (json.dumps({"answer": "x"}), 'qa.jsonl:2: no "question" text'),
        (json.dumps({"question": "q", "answers": []}), 'qa.jsonl:2: "answers" must be'),
        (json.dumps({"question": "q", "answer": None}), "qa.jsonl:2: answers must be strings"),
    ],
)
def test_malformed_lines_are_named(tmp_path, line, message):
    path = _write(tmp_path / "qa.jsonl", [json.dumps({"question": "q", "answer": "a"}), line])
    with pytest.raises(InvalidArgument, match=message):
        load_qa(path, field=FIELD)


def test_a_folder_is_read_file_by_file_in_name_order(tmp_path):
    _write(tmp_path / "b.jsonl", [json.dumps({"question": "second", "answer": "2"})])
    _write(tmp_path / "a.jsonl", [json.dumps({"question": "first", "answer": "1"})])
    (tmp_path / "notes.txt").write_text("ignored")
    assert [i.question for i in load_qa(tmp_path)] == ["first", "second"]


def test_empty_or_missing_datasets_are_refused(tmp_path):
    with pytest.raises(InvalidArgument, match=r"no \.jsonl file"):
        load_qa(tmp_path)
    with pytest.raises(InvalidArgument, match="not found"):
        load_qa(tmp_path / "missing.jsonl")
    _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(InvalidArgument, match="no question"):
        load_qa(tmp_path / "empty.jsonl")


def test_texts_need_a_text_field(tmp_path):
    path = _write(tmp_path / "t.jsonl", [json.dumps({"text": "one"}), json.dumps({"body": "x"})])
    with pytest.raises(InvalidArgument, match=r't\.jsonl:2: no "text" string'):
        load_texts(path)
    assert load_texts(path, limit=1) == ["one"]


def test_builtin_gsm8k_mini_loads():
    items = builtin_suite("gsm8k-mini").generation_qa().load()
    assert len(items) == 30
    assert all("####" in i.answers[0] for i in items)
