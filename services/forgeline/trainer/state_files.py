"""Reading checkpoint files: tensors and plain state only, never code.

A checkpoint lives in the job's storage, which other processes and machines write to, so
loading one must not be able to run anything. Every `.pt` file the trainer reads goes
through `load_plain_state`: `torch.load` with `weights_only=True`, which accepts tensors,
dicts, lists, tuples, strings, numbers and booleans, and refuses any other object. The
trainer's own files need nothing more (optimizer and schedule state dicts, RNG states as
tensors and tuples of ints); DeepSpeed's add three small data types of its own, which its
engine names through `allowed_types`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpoint(Exception):
    """A checkpoint file holds more than tensors and plain state; it was not loaded."""


def load_plain_state(
    path: str | Path, map_location: Any = None, *, allowed_types: Iterable[type] = ()
) -> Any:
    """Loads a file written by `torch.save`, refusing anything but plain state.

    Args:
        path: The file.
        map_location: Where tensors go (as for `torch.load`).
        allowed_types: Data classes to accept besides plain state (rebuilt from their
            fields, never by calling code named in the file).

    Raises:
        UnsafeCheckpoint: the file holds other objects (its name and the first one found
            are in the message).
    """
    try:
        with torch.serialization.safe_globals(list(allowed_types)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpoint(
            f"{path} holds more than tensors and plain state; refusing to load it ({_reason(exc)})"
        ) from None


def _reason(exc: Exception) -> str:
    for line in str(exc).splitlines():
        if "Unsupported" in line or "WeightsUnpickler error" in line:
            return line.strip().split(" was not an allowed global")[0]
    return type(exc).__name__
