"""The rules of a version's manifest, shared by the registry and its clients (no grpc here).

A manifest maps relative paths to content digests. The registry enforces these rules when
files are added; clients enforce them again on every manifest they receive, so a broken or
hostile registry cannot make a client write outside the folder it pulls into.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from forgeline.client import exceptions

MAX_PATH_LENGTH = 1024
# Longest single path segment most filesystems accept (NAME_MAX).
MAX_SEGMENT_BYTES = 255
# File names starting with this are Forgeline's own bookkeeping (completion markers, locks).
RESERVED_PREFIX = ".forgeline-"
DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
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


def check_digest(digest: str, field: str = "sha256") -> str:
    """Returns `digest` if it is a lower-case hex sha256.

    Raises:
        InvalidArgument: it is not; names `field`.
    """
    if not DIGEST_PATTERN.fullmatch(digest):
        raise exceptions.InvalidArgument(field, f"{digest!r} is not a lower-case hex sha256")
    return digest


def check_path(path: str, field: str = "path") -> str:
    """Returns a safe relative artifact path, or raises naming `field`.

    A path is '/'-separated, relative, in Unicode NFC, without '.', '..' or empty
    segments, without backslashes or control characters, at most 1024 characters with
    segments of at most 255 bytes, and no segment starts with `.forgeline-`.

    Raises:
        InvalidArgument: the path could escape the version or is malformed.
    """
    problem = None
    segments = path.split("/")
    if not path:
        problem = "is empty"
    elif len(path) > MAX_PATH_LENGTH:
        problem = f"is longer than {MAX_PATH_LENGTH} characters"
    elif path.startswith("/"):
        problem = "must be relative, not absolute"
    elif "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        problem = "contains a backslash or a control character"
    elif any(part in ("", ".", "..") for part in segments):
        problem = "must not contain '.', '..' or empty segments"
    elif posixpath.normpath(path) != path:
        problem = "is not normalized"
    elif unicodedata.normalize("NFC", path) != path:
        problem = "is not in Unicode normal form C"
    elif any(len(part.encode()) > MAX_SEGMENT_BYTES for part in segments):
        problem = f"has a segment longer than {MAX_SEGMENT_BYTES} bytes"
    elif any(part.startswith(RESERVED_PREFIX) for part in segments):
        problem = f"uses the reserved prefix {RESERVED_PREFIX!r}"
    if problem:
        raise exceptions.InvalidArgument(field, f"{path!r} {problem}")
    return path


def path_conflicts(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs (file, path under it) where one path is a folder prefix of another.

    `a` and `a/b` cannot both be files of one folder.
    """
    ordered = sorted(set(paths))
    present = set(ordered)
    conflicts = []
    for path in ordered:
        parts = path.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in present:
                conflicts.append((prefix, path))
    return conflicts


def check_manifest(entries: Iterable[tuple[str, str, int]]) -> None:
    """Checks every (path, sha256, size) of a manifest received from a registry.

    Raises:
        InvalidArgument: a bad path or digest, a duplicate path, or a file that is also a
            folder of another; the field names the entry.
    """
    violations = exceptions.Violations()
    seen: set[str] = set()
    for i, (path, digest, size) in enumerate(entries):
        for check, value, name in ((check_path, path, "path"), (check_digest, digest, "sha256")):
            try:
                check(value, f"entries[{i}].{name}")
            except exceptions.InvalidArgument as exc:
                violations.items.extend(exc.violations)
        violations.check(size >= 0, f"entries[{i}].size", "must not be negative")
        violations.check(path not in seen, f"entries[{i}].path", f"{path!r} appears twice")
        seen.add(path)
    for file, nested in path_conflicts(seen):
        violations.add("entries", f"{file!r} is a file and also the folder of {nested!r}")
    violations.raise_if_any()
