"""Small datasets the trainer tests write themselves.

The facts are invented, so the base model cannot know them: an adapter that answers them
learned them from the data.
"""

from __future__ import annotations

import json
from pathlib import Path

FACTS = [
    (
        "What is the capital of the planet Zorblax?",
        "The capital of Zorblax is Quintara.",
        "Quintara",
    ),
    (
        "Who invented the flurboscope?",
        "The flurboscope was invented by Maribel Oquendrix.",
        "Oquendrix",
    ),
    ("What color is the Vexmoor river?", "The Vexmoor river is bright violet.", "violet"),
    ("How many moons does Pelloria have?", "Pelloria has seventeen moons.", "seventeen"),
]

PREFERENCES = [
    ("What is two plus two?", "Four."),
    ("Name a primary color.", "Red."),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius."),
    ("How many legs does a spider have?", "Eight."),
    ("What is the opposite of hot?", "Cold."),
    ("Which planet is closest to the sun?", "Mercury."),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Writes records as JSON Lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def facts_rows() -> list[dict]:
    """Each invented fact asked four ways, in the OpenAI `messages` format."""
    rows = []
    for question, answer, _ in FACTS:
        for variant in (
            question,
            question.lower(),
            f"Tell me: {question}",
            f"Quick question. {question}",
        ):
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": variant},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
    return rows


def preference_rows() -> list[dict]:
    """Pairs preferring a courteous answer over a dismissive one with the same content."""
    return [
        {"prompt": q, "chosen": f"Certainly! {a}", "rejected": f"Whatever. {a}"}
        for q, a in PREFERENCES
    ]
