"""Calibration text for GPTQ and AWQ: the bundled default sample, or text from a dataset.

`default_texts` reads the sample that ships with the package (`data/calibration.jsonl`, see
`data/PROVENANCE.md`): no calibration data is ever downloaded. `texts_from_dataset` turns a
registry DATASET version, in any format the trainer reads, into plain texts, and
`split_heldout` sets some of them aside to measure perplexity on, and `calibration_samples`
cuts the rest into the token sequences a quantizer calibrates on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

from forgeline.client import exceptions
from forgeline.trainer.data.formats import FIELDS_HINT, detect_format, parse_record
from forgeline.trainer.data.readers import SUFFIXES, dataset_files, read_records
from forgeline.trainer.data.records import (
    Conversation,
    Dataset,
    Example,
    Preference,
    ProblemSink,
    Text,
)

log = logging.getLogger(__name__)

DEFAULT_FILE = Path(__file__).parent / "data" / "calibration.jsonl"
FIELD = "spec.calibration_dataset"


def default_texts() -> list[str]:
    """The bundled default calibration sample (GSM8K and MMLU validation text, MIT licensed)."""
    with open(DEFAULT_FILE, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def default_digest() -> str:
    """sha256 (hex) of the bundled sample, to record which calibration text a job used."""
    return hashlib.sha256(DEFAULT_FILE.read_bytes()).hexdigest()


def example_text(example: Example) -> str:
    """The plain text of one canonical training example.

    A conversation is its turns' contents, one after the other; a preference pair is its
    prompt followed by the preferred answer (the text a model should be good at).
    """
    if isinstance(example, Text):
        return example.text
    if isinstance(example, Conversation):
        return "\n".join(m["content"] for m in example.messages if m["content"].strip())
    if isinstance(example, Preference):
        return "\n".join([*(m["content"] for m in example.prompt), example.chosen])
    raise TypeError(f"not a training example: {type(example).__name__}")


def texts_from_dataset(folder: Path, limit: int) -> list[str]:
    """Up to `limit` calibration texts from a dataset file or a DATASET version folder.

    Every format the trainer reads is accepted (messages, ShareGPT, Alpaca, query-response,
    plain text, both preference layouts), detected per file from its first record. Records
    that cannot be used are skipped; only a dataset with no usable text at all is refused.

    Args:
        folder: A pulled DATASET version (or one data file).
        limit: Most texts to return (at least 1).

    Returns:
        The texts, in file order, none of them blank.

    Raises:
        InvalidArgument: `spec.calibration_dataset` has no data file or no usable text; the
            description names the files and lines at fault.
    """
    folder = Path(folder)
    dataset = Dataset()
    sink = ProblemSink(dataset)
    files = dataset_files(folder)
    if not files:
        raise exceptions.InvalidArgument(
            FIELD, f"{folder.name} holds no data file ({', '.join(SUFFIXES)})"
        )
    texts: list[str] = []
    for file in files:
        label = str(file.relative_to(folder)) if folder.is_dir() else file.name
        _read_file(file, label, sink, texts, max(limit, 1))
        if len(texts) >= limit:
            break
    if not texts:
        detail = "; ".join(dataset.describe_problems()) or "every record is empty"
        raise exceptions.InvalidArgument(FIELD, f"no usable calibration text: {detail}")
    if dataset.problems:
        log.info(
            "calibration text: skipped %d unusable records, first: %s",
            len(dataset.problems) + dataset.more_problems,
            dataset.problems[0],
        )
    return texts[:limit]


def _read_file(file: Path, label: str, sink: ProblemSink, texts: list[str], limit: int) -> None:
    """Appends the texts of one data file to `texts`, reporting unusable records to `sink`."""
    fmt = None
    for line, record in read_records(file, label, sink):
        if len(texts) >= limit:
            return
        if not isinstance(record, dict):
            sink.add(label, line, "", f"a record must be an object, got {type(record).__name__}")
            continue
        if fmt is None:
            fmt = detect_format(record)
            if fmt is None:
                hints = "; ".join(f"{f.name}: {hint}" for f, hint in FIELDS_HINT.items())
                sink.add(
                    label,
                    line,
                    "",
                    f"no text in fields {sorted(record)}; give one of {hints}",
                )
                return
        example = parse_record(fmt, record, label, line, sink)
        if example is None:
            continue
        text = example_text(example)
        if text.strip():
            texts.append(text)
        else:
            sink.add(label, line, "", "the record's text is blank")


def split_heldout(
    texts: list[str], fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Splits texts into calibration and held-out parts, the same way for the same input.

    The held-out texts are drawn at random (seeded), at least one when there are two texts
    or more; both parts keep the texts' original order.

    Args:
        texts: All texts.
        fraction: Share of the texts to hold out, in [0, 1).
        seed: Seed of the draw.

    Returns:
        (calibration, heldout).

    Raises:
        ValueError: `fraction` is outside [0, 1).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    count = round(len(texts) * fraction)
    if fraction > 0 and len(texts) >= 2:
        count = max(count, 1)
    held = set(random.Random(seed).sample(range(len(texts)), count))
    calibration = [t for i, t in enumerate(texts) if i not in held]
    heldout = [t for i, t in enumerate(texts) if i in held]
    return calibration, heldout


def calibration_samples(tokenizer: Any, texts: list[str], nsamples: int, seqlen: int) -> list:
    """Up to `nsamples` token sequences of `seqlen`, spread evenly over the joined texts.

    Args:
        tokenizer: The model's tokenizer.
        texts: Calibration texts, joined with a blank line between them.
        nsamples: Most sequences (fewer when the text is shorter).
        seqlen: Tokens per sequence.

    Returns:
        Tensors of shape (1, seqlen).

    Raises:
        InvalidArgument: `spec.calibration_dataset`: the texts hold fewer than `seqlen` tokens.
    """
    ids = tokenizer("\n\n".join(t for t in texts if t.strip()), return_tensors="pt").input_ids[0]
    windows = len(ids) // seqlen if seqlen > 0 else 0
    if windows == 0 or nsamples <= 0:
        raise exceptions.InvalidArgument(
            FIELD,
            f"the calibration text holds {len(ids)} tokens, fewer than one sequence of "
            f"{seqlen}; give more text or a shorter calibration_max_seq_length",
        )
    count = min(nsamples, windows)
    if count < nsamples:
        log.info("calibration text gives %d sequences of %d, not %d", count, seqlen, nsamples)
    starts = [(i * windows // count) * seqlen for i in range(count)]
    return [ids[s : s + seqlen].unsqueeze(0) for s in starts]
