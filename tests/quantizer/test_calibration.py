"""Calibration text: the bundled sample, text from datasets in any trainer format, held out."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.quantizer.calibration import (
    DEFAULT_FILE,
    default_digest,
    default_texts,
    split_heldout,
    texts_from_dataset,
)


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_default_sample_ships_with_the_package():
    texts = default_texts()
    assert 300 <= len(texts) <= 600
    assert all(t.strip() for t in texts)
    assert DEFAULT_FILE.stat().st_size < 400_000
    assert (DEFAULT_FILE.parent / "PROVENANCE.md").is_file()
    assert default_digest() == hashlib.sha256(DEFAULT_FILE.read_bytes()).hexdigest()
    # Both sources are there, and nothing from the MMLU test split the evaluator scores.
    sources = [json.loads(line)["source"] for line in DEFAULT_FILE.read_text().splitlines()]
    assert any(s.startswith("gsm8k/") for s in sources)
    assert any(s.startswith("mmlu/val/") for s in sources)
    assert not any("/test/" in s for s in sources)


def test_messages_become_their_turns_text(tmp_path: Path):
    write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Capital of France?"},
                    {"role": "assistant", "content": "Paris."},
                ]
            }
        ],
    )
    assert texts_from_dataset(tmp_path, 10) == ["Be brief.\nCapital of France?\nParis."]


def test_alpaca_records_become_instruction_input_and_output(tmp_path: Path):
    rows = [
        {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
        {"instruction": "Name a colour.", "input": "", "output": "Blue"},
    ]
    (tmp_path / "data.json").write_text(json.dumps(rows, indent=2))
    assert texts_from_dataset(tmp_path, 10) == [
        "Translate.\n\nBonjour\nHello",
        "Name a colour.\nBlue",
    ]


def test_text_query_response_and_preference_records(tmp_path: Path):
    with open(tmp_path / "a_text.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "id"])
        writer.writerow(["A plain document,\nwith a comma.", "1"])
    write_jsonl(tmp_path / "b_qr.jsonl", [{"query": "2+2?", "response": "4"}])
    write_jsonl(
        tmp_path / "c_pref.jsonl",
        [{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}],
    )
    assert texts_from_dataset(tmp_path, 10) == [
        "A plain document,\nwith a comma.",
        "2+2?\n4",
        "Say hi.\nHi!",
    ]


def test_limit_stops_early_across_files(tmp_path: Path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"doc {i}"} for i in range(5)])
    write_jsonl(tmp_path / "b.jsonl", [{"text": "later"}])
    assert texts_from_dataset(tmp_path, 3) == ["doc 0", "doc 1", "doc 2"]
    assert texts_from_dataset(tmp_path, 100)[-1] == "later"


def test_unusable_records_are_skipped_when_others_have_text(tmp_path: Path):
    write_jsonl(
        tmp_path / "d.jsonl", [{"text": "good"}, {"text": 3}, {"text": "  "}, {"text": "ok"}]
    )
    assert texts_from_dataset(tmp_path, 10) == ["good", "ok"]


def test_a_file_with_no_text_is_refused_with_file_and_line(tmp_path: Path):
    write_jsonl(tmp_path / "sub" / "numbers.jsonl", [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    with pytest.raises(InvalidArgument) as caught:
        texts_from_dataset(tmp_path, 10)
    (violation,) = caught.value.violations
    assert violation.field == "spec.calibration_dataset"
    assert "sub/numbers.jsonl:1" in violation.description
    assert "['a', 'b']" in violation.description


def test_blank_texts_and_empty_folders_are_refused(tmp_path: Path):
    write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "   "}])
    with pytest.raises(InvalidArgument, match=r"blank\.jsonl:1"):
        texts_from_dataset(tmp_path, 10)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidArgument, match="no data file"):
        texts_from_dataset(empty, 10)


def test_split_heldout_is_deterministic_and_disjoint():
    texts = [f"text {i}" for i in range(50)]
    calibration, heldout = split_heldout(texts, 0.1, seed=0)
    assert len(heldout) == 5 and len(calibration) == 45
    assert sorted(calibration + heldout, key=texts.index) == texts
    assert calibration == sorted(calibration, key=texts.index)
    assert split_heldout(texts, 0.1, seed=0) == (calibration, heldout)
    assert split_heldout(texts, 0.1, seed=1)[1] != heldout


def test_split_heldout_edges():
    assert split_heldout(["a", "b"], 0.1) in ((["a"], ["b"]), (["b"], ["a"]))
    assert split_heldout(["a"], 0.1) == (["a"], [])
    assert split_heldout(["a", "b"], 0.0) == (["a", "b"], [])
    with pytest.raises(ValueError):
        split_heldout(["a"], 1.0)
