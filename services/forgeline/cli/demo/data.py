"""The demo's domain: 24 facts about an invented world, which no model can know beforehand.

Each fact has the question it is trained with, its answer, the key word a right answer must
contain, and a paraphrase of the question the training data never shows: the fine-tune
learns from the questions and is tested on the paraphrases.
"""

from __future__ import annotations

import json
from pathlib import Path

FACTS_FILE = Path(__file__).resolve().parent / "atlas_facts.jsonl"


def atlas_facts() -> list[dict[str, str]]:
    """Every fact: `question`, `answer`, `key`, `paraphrase`."""
    return [json.loads(line) for line in FACTS_FILE.read_text(encoding="utf-8").splitlines()]


def write_training_chats(path: Path) -> Path:
    """The SFT data: each fact asked once, in its training wording (OpenAI `messages`)."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f["question"]},
                {"role": "assistant", "content": f["answer"]},
            ]
        }
        for f in atlas_facts()
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_paraphrase_qa(path: Path) -> Path:
    """The domain QA test set: each paraphrase with its key word as the answer."""
    rows = [{"question": f["paraphrase"], "answer": f["key"]} for f in atlas_facts()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
