"""Content-addressed blob storage.

Blobs are named by the sha256 of their content. A blob becomes visible only complete and
verified: bytes go to a partial file, the digest is checked, then the file is renamed into
place (atomic on POSIX), so a crash never exposes half a blob. An interrupted upload keeps
its partial file and can resume from its size. `BlobStore` is the interface an object
store backend would implement; `LocalBlobStore` keeps blobs in a directory.
"""

from __future__ import annotations

import abc
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from forgeline.client import exceptions
from forgeline.client.manifests import DIGEST_PATTERN

_HASH_BLOCK = 4 * 1024 * 1024


class BlobWriter(abc.ABC):
    """Receives the bytes of one blob, from an offset, and verifies them at the end."""

    digest: str
    size: int
    offset: int

    @abc.abstractmethod
    def write(self, chunk: bytes) -> None:
        """Appends `chunk`.

        Raises:
            InvalidArgument: more bytes than the declared size.
        """

    @abc.abstractmethod
    def finish(self) -> None:
        """Verifies size and digest and publishes the blob.

        Raises:
            InvalidArgument: size or digest mismatch (the partial data is discarded).
        """

    @abc.abstractmethod
    def suspend(self) -> None:
        """Stops writing without publishing; a resumable writer keeps what it has."""


class BlobStore(abc.ABC):
    """Where blob bytes live, by digest."""

    @abc.abstractmethod
    def size_of(self, digest: str) -> int | None:
        """Size of a complete blob, or None when absent."""

    @abc.abstractmethod
    def partial_size(self, digest: str) -> int:
        """Bytes an interrupted upload of `digest` left, 0 when none."""

    @abc.abstractmethod
    def writer(self, digest: str, size: int, offset: int) -> BlobWriter:
        """Starts (or resumes at `offset`) an upload of `digest`.

        Raises:
            FailedPrecondition: `offset` is beyond what the store has.
        """

    @abc.abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """Opens a complete blob for reading.

        Raises:
            NotFound: the blob is absent.
        """

    @abc.abstractmethod
    def delete(self, digest: str) -> int:
        """Deletes a blob; returns the bytes freed (0 when absent)."""

    @abc.abstractmethod
    def digests(self) -> Iterator[str]:
        """Every complete blob's digest."""

    def local_path(self, digest: str) -> Path | None:
        """A filesystem path for reading the blob in place, when the backend has one."""
        return None


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore, digest: str, size: int, offset: int):
        self.store = store
        self.digest = digest
        self.size = size
        self.offset = offset
        self._lock = store._upload_locks.setdefault(digest, threading.Lock())
        # One upload per digest owns the resumable partial file; a concurrent upload of the
        # same content writes a private temp file instead, and whichever finishes first wins.
        self.resumable = self._lock.acquire(blocking=False)
        if self.resumable:
            self.path = store.partial_path(digest)
        else:
            if offset:
                raise exceptions.FailedPrecondition(
                    f"another upload of {digest[:12]} is in progress; retry from offset 0 or later",
                    subject=f"blobs/{digest}",
                    type="UPLOAD_IN_PROGRESS",
                )
            self.path = store.root / "uploads" / f"{digest}.{uuid.uuid4().hex}.tmp"
        try:
            have = self.path.stat().st_size if self.path.exists() else 0
            if offset > have:
                raise exceptions.FailedPrecondition(
                    f"upload of {digest[:12]} cannot resume at {offset}: the store has {have} "
                    "bytes; resume from there",
                    subject=f"blobs/{digest}",
                    type="UPLOAD_OFFSET",
                )
            self._hash = hashlib.sha256()
            self._file = open(self.path, "r+b" if self.path.exists() else "w+b")  # noqa: SIM115
            self._file.truncate(offset)
            # Resuming: the digest covers the whole content, so hash what is already there.
            self._file.seek(0)
            remaining = offset
            while remaining:
                block = self._file.read(min(_HASH_BLOCK, remaining))
                self._hash.update(block)
                remaining -= len(block)
            self._file.seek(offset)
        except BaseException:
            self._release()
            raise

    def write(self, chunk: bytes) -> None:
        if self.offset + len(chunk) > self.size:
            raise exceptions.InvalidArgument(
                "header.size", f"received more than the declared {self.size} bytes"
            )
        self._file.write(chunk)
        self._hash.update(chunk)
        self.offset += len(chunk)

    def finish(self) -> None:
        try:
            if self.offset != self.size:
                raise exceptions.InvalidArgument(
                    "header.size",
                    f"upload ended at byte {self.offset} of a declared {self.size}; "
                    f"resume from offset {self.offset}",
                )
            actual = self._hash.hexdigest()
            if actual != self.digest:
                self._file.close()
                self.path.unlink(missing_ok=True)
                raise exceptions.InvalidArgument(
                    "header.sha256", f"content hashes to {actual}, not the declared {self.digest}"
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            # Read-only: clients hard-link blobs into their caches, and a write through such
            # a link would change the stored content under its digest.
            os.fchmod(self._file.fileno(), 0o444)
            self._file.close()
            final = self.store.blob_path(self.digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, final)
        finally:
            self._close_quietly()
            self._release()

    def suspend(self) -> None:
        self._close_quietly()
        if not self.resumable:
            self.path.unlink(missing_ok=True)
        self._release()

    def _close_quietly(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def _release(self) -> None:
        if self.resumable and self._lock.locked():
            self._lock.release()
            self.resumable = False


class LocalBlobStore(BlobStore):
    """Blobs as files: `<root>/sha256/ab/<digest>`, partial uploads under `<root>/uploads/`.

    Args:
        root: Directory owned by the store (created if missing).
    """

    def __init__(self, root: Path):
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "uploads").mkdir(parents=True, exist_ok=True)
        self._upload_locks: dict[str, threading.Lock] = {}
        # Private temp files of concurrent uploads are never resumed; drop leftovers.
        for leftover in (root / "uploads").glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    def blob_path(self, digest: str) -> Path:
        """Where a complete blob lives."""
        return self.root / "sha256" / digest[:2] / digest

    def partial_path(self, digest: str) -> Path:
        """Where the resumable upload of a blob collects its bytes."""
        return self.root / "uploads" / f"{digest}.partial"

    def size_of(self, digest: str) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def partial_size(self, digest: str) -> int:
        try:
            return self.partial_path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def writer(self, digest: str, size: int, offset: int) -> BlobWriter:
        return _LocalWriter(self, digest, size, offset)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise exceptions.NotFound("blob", digest) from None

    def delete(self, digest: str) -> int:
        path = self.blob_path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
            return size
        except FileNotFoundError:
            return 0

    def digests(self) -> Iterator[str]:
        for path in (self.root / "sha256").glob("*/*"):
            if DIGEST_PATTERN.fullmatch(path.name):
                yield path.name

    def local_path(self, digest: str) -> Path | None:
        path = self.blob_path(digest)
        return path if path.exists() else None
