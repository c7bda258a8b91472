"""Packing tokenized sequences into full rows, with attention kept inside each sequence."""

from __future__ import annotations

from collections.abc import Sequence

from forgeline.trainer.data.tokenizing import IGNORE_INDEX, Tokenized


def pack(sequences: Sequence[Tokenized], max_length: int) -> list[dict[str, list[int]]]:
    """Packs sequences into rows of up to `max_length` tokens, best fit decreasing.

    Each row carries `position_ids` that restart at 0 for every sequence; with no
    attention mask, transformers reads those as sequence boundaries and keeps attention
    inside each sequence, so packing changes throughput, not what the model sees.
    """
    rows: list[list[Tokenized]] = []
    room: list[int] = []
    for seq in sorted(sequences, key=lambda s: len(s.input_ids), reverse=True):
        n = len(seq.input_ids)
        best = -1
        for i, free in enumerate(room):
            if n <= free and (best < 0 or free < room[best]):
                best = i
        if best < 0:
            rows.append([seq])
            room.append(max_length - n)
        else:
            rows[best].append(seq)
            room[best] -= n
    packed = []
    for row in rows:
        ids, labels, positions = [], [], []
        for seq in row:
            ids += seq.input_ids
            # The first token of each sequence has no prediction target from the previous one.
            labels += [IGNORE_INDEX, *seq.labels[1:]]
            positions += list(range(len(seq.input_ids)))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return packed
