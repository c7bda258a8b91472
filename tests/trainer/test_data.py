"""Dataset formats: detection, validation with file/line/field, tokenization, packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeline.trainer import data
from forgeline.trainer.config import DataFormat, Task
from tests.trainer.datasets import write_jsonl

SAMPLES = {
    DataFormat.MESSAGES: {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    },
    DataFormat.ALPACA: {"instruction": "Add", "input": "2 and 2", "output": "4"},
    DataFormat.SHAREGPT: {
        "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    },
    DataFormat.QUERY_RESPONSE: {"query": "hi", "response": "hello", "system": "Be brief."},
    DataFormat.TEXT: {"text": "Plain text for pre-training."},
    DataFormat.PREFERENCE: {"prompt": "hi", "chosen": "hello", "rejected": "go away"},
    DataFormat.SHAREGPT_PREFERENCE: {
        "conversations": [{"from": "human", "value": "hi"}],
        "chosen": {"from": "gpt", "value": "hello"},
        "rejected": {"from": "gpt", "value": "go away"},
    },
}
TASK_OF = {
    DataFormat.MESSAGES: Task.SFT,
    DataFormat.ALPACA: Task.SFT,
    DataFormat.SHAREGPT: Task.SFT,
    DataFormat.QUERY_RESPONSE: Task.SFT,
    DataFormat.TEXT: Task.PRETRAIN,
    DataFormat.PREFERENCE: Task.DPO,
    DataFormat.SHAREGPT_PREFERENCE: Task.DPO,
}


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_every_format_is_detected_and_canonicalized(tmp_path, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLES[fmt]] * 3)
    loaded = data.load_dataset(path, TASK_OF[fmt])
    assert loaded.ok, loaded.describe_problems()
    assert loaded.format is fmt and len(loaded.examples) == 3
    example = loaded.examples[0]
    if fmt is DataFormat.TEXT:
        assert isinstance(example, data.Text)
    elif TASK_OF[fmt] is Task.DPO:
        assert isinstance(example, data.Preference)
        assert example.prompt[-1] == {"role": "user", "content": "hi"}
        assert (example.chosen, example.rejected) == ("hello", "go away")
    else:
        assert isinstance(example, data.Conversation)
        assert example.messages[-1]["role"] == "assistant"


def test_problems_name_file_line_and_field_and_all_are_reported(tmp_path):
    path = tmp_path / "law_qa.jsonl"
    good = SAMPLES[DataFormat.MESSAGES]
    lines = [
        json.dumps(good),
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]}
        ),
        "",
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": 3}]}),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    loaded = data.load_dataset(path, Task.SFT)
    problems = [str(p) for p in loaded.problems]
    assert problems == [
        "law_qa.jsonl:2: messages[1].role: unknown role 'robot'; use system, user or assistant",
        "law_qa.jsonl:4: not valid JSON: Expecting property name enclosed in double quotes "
        "(column 2)",
        "law_qa.jsonl:5: messages[0].content: must be a string, got int",
        "law_qa.jsonl:6: messages: has no assistant turn with content to learn from",
    ]
    assert len(loaded.examples) == 1


def test_problems_stop_at_the_limit_with_a_count(tmp_path):
    rows = [{"instruction": "", "output": "x"}] * (data.MAX_PROBLEMS + 5)
    loaded = data.load_dataset(write_jsonl(tmp_path / "a.jsonl", rows), Task.SFT)
    assert len(loaded.problems) == data.MAX_PROBLEMS and loaded.more_problems == 5
    assert loaded.describe_problems()[-1] == "... and 5 more problems"
    assert str(loaded.problems[0]) == "a.jsonl:1: instruction: is empty"


def test_json_array_problems_carry_line_numbers(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(
        '[\n  {"prompt": "a", "chosen": "b", "rejected": "c"},\n'
        '  {"prompt": "a", "chosen": "b", "rejected": "b"},\n'
        '  {"prompt": "a",\n   "chosen": "b"}\n]\n'
    )
    loaded = data.load_dataset(path, Task.DPO)
    assert [str(p) for p in loaded.problems] == [
        "pairs.json:3: rejected: is identical to `chosen`; a pair must differ",
        "pairs.json:4: rejected: missing",
    ]


def test_json_array_lines_count_across_multi_line_records(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(
        '[\n  {"prompt": "a",\n   "chosen": "b",\n   "rejected": "c"},\n'
        '  {"prompt": "a", "chosen": "b", "rejected": ""},\n\n'
        '  {"prompt": "a", "chosen": "b", "rejected": "c"}\n'
        '  {"prompt": "a", "chosen": "b", "rejected": "c"}\n]\n'
    )
    loaded = data.load_dataset(path, Task.DPO)
    assert [str(p) for p in loaded.problems] == [
        "pairs.json:5: rejected: is empty",
        "pairs.json:8: expected ',' or ']' between records",
    ]
    assert len(loaded.examples) == 2


def test_format_that_cannot_train_the_task_is_explained(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [SAMPLES[DataFormat.TEXT]])
    loaded = data.load_dataset(path, Task.DPO)
    assert not loaded.ok
    assert "records are TEXT" in str(loaded.problems[0]) and "cannot train DPO" in str(
        loaded.problems[0]
    )


def test_csv_alpaca(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('instruction,input,output\nAdd,"2 and 2",4\n"",,5\n')
    loaded = data.load_dataset(path, Task.SFT)
    assert loaded.format is DataFormat.ALPACA
    assert [str(p) for p in loaded.problems] == ["a.csv:3: instruction: is empty"]


@pytest.fixture(scope="module")
def tokenizer(bundled_model: Path):
    from forgeline.trainer.modeling import load_tokenizer

    return load_tokenizer(bundled_model)


def test_sft_labels_cover_the_assistant_answers_only(tokenizer):
    convo = data.Conversation(
        (
            {"role": "user", "content": "Question one?"},
            {"role": "assistant", "content": "Answer one."},
            {"role": "user", "content": "Question two?"},
            {"role": "assistant", "content": "Answer two."},
        )
    )
    item = data.tokenize_conversation(tokenizer, convo, 512)
    learned = tokenizer.decode(
        [t for t, lab in zip(item.input_ids, item.labels, strict=True) if lab != data.IGNORE_INDEX]
    )
    assert "Answer one." in learned and "Answer two." in learned
    assert "Question" not in learned and "user" not in learned
    assert learned.count("<|im_end|>") == 2  # the model learns to stop


def test_packing_keeps_sequences_apart(tokenizer):
    seqs = [data.Tokenized(list(range(1, n + 1)), list(range(1, n + 1))) for n in (5, 3, 7, 2)]
    rows = data.pack(seqs, 10)
    assert sorted(len(r["input_ids"]) for r in rows) == [7, 10]
    for row in rows:
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        assert all(row["labels"][i] == data.IGNORE_INDEX for i in starts)
    assert data.count_tokens(rows) == 17


def test_preference_pairs_keep_answers_and_trim_the_prompt(tokenizer):
    pair = data.Preference(({"role": "user", "content": "word " * 200},), "Yes.", "No.")
    item = data.tokenize_preference(tokenizer, pair, 64)
    assert len(item.prompt_ids) + max(len(item.chosen_ids), len(item.rejected_ids)) <= 64
    assert tokenizer.decode(item.chosen_ids).startswith("Yes.")
