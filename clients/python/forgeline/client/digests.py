"""Content digests shared by the registry and its clients (no grpc here)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_HASH_BLOCK = 4 * 1024 * 1024


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def manifest_digest(entries: Iterable[tuple[str, str, int]]) -> str:
    """sha256 over a sorted manifest of (path, sha256, size): equal content, equal digest."""
    h = hashlib.sha256()
    for path, digest, size in sorted(entries):
        h.update(f"{path}\0{digest}\0{size}\n".encode())
    return h.hexdigest()
