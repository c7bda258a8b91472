"""Content-addressed blob storage.

Blobs are named by the sha256 of their content. A blob becomes visible only complete and
verified: bytes go to a partial file, the digest is checked, then the file is renamed into
place (atomic on POSIX), so a crash never exposes half a blob. An interrupted upload keeps
its partial file and can resume from its size. `BlobStore` is the interface an object
store backend would implement; `LocalBlobStore` keeps blobs in a directory.
"""

from __future__ import annotations

import abc
import fcntl
import hashlib
import os
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
        """Bytes an interrupted upload of `digest` left; 0 when none, or while one is writing."""

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

    @abc.abstractmethod
    def prune_uploads(self, older_than: float) -> tuple[int, int]:
        """Deletes unfinished uploads last written before `older_than` (a Unix time).

        Returns the number of files and bytes freed.
        """


def _fsync_dir(path: Path) -> None:
    """Makes a rename or a new entry in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_partial(path: Path) -> int | None:
    """Opens and exclusively locks the resumable partial file of an upload.

    Returns the open descriptor, or None when another upload (in any process) holds it.
    The lock is taken on the file itself (flock), and re-checked against the path: the
    owner renames a finished partial into place while still holding it, and a lock won
    on that renamed file must not be used.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # it was finished and moved away meanwhile: start on a fresh partial


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore, digest: str, size: int, offset: int):
        self.store = store
        self.digest = digest
        self.size = size
        self.offset = offset
        # One upload per digest (across processes sharing the store) owns the resumable
        # partial file; a concurrent upload of the same content writes a private temp file
        # instead, and whichever finishes first wins.
        self.path = store.partial_path(digest)
        fd = _lock_partial(self.path)
        self.resumable = fd is not None
        if fd is None:
            if offset:
                raise exceptions.FailedPrecondition(
                    f"another upload of {digest[:12]} is in progress; retry from offset 0 or later",
                    subject=f"blobs/{digest}",
                    type="UPLOAD_IN_PROGRESS",
                )
            self.path = store.root / "uploads" / f"{digest}.{uuid.uuid4().hex}.tmp"
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "r+b")
        try:
            have = os.fstat(fd).st_size
            if offset > have:
                raise exceptions.FailedPrecondition(
                    f"upload of {digest[:12]} cannot resume at {offset}: the store has {have} "
                    "bytes; resume from there",
                    subject=f"blobs/{digest}",
                    type="UPLOAD_OFFSET",
                )
            self._hash = hashlib.sha256()
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
            self._file.close()
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
                self.path.unlink(missing_ok=True)
                raise exceptions.InvalidArgument(
                    "header.sha256", f"content hashes to {actual}, not the declared {self.digest}"
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            # Read-only: clients hard-link blobs into their caches, and a write through such
            # a link would change the stored content under its digest.
            os.fchmod(self._file.fileno(), 0o444)
            final = self.store.blob_path(self.digest)
            if not final.parent.is_dir():
                final.parent.mkdir(parents=True, exist_ok=True)
                _fsync_dir(final.parent.parent)
            # Renamed while still locked, so no other upload can start writing into it.
            os.replace(self.path, final)
            _fsync_dir(final.parent)
        finally:
            self._file.close()

    def suspend(self) -> None:
        self._file.close()
        if not self.resumable:
            self.path.unlink(missing_ok=True)


class LocalBlobStore(BlobStore):
    """Blobs as files: `<root>/sha256/ab/<digest>`, partial uploads under `<root>/uploads/`.

    Args:
        root: Directory owned by the store (created if missing).
    """

    def __init__(self, root: Path):
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "uploads").mkdir(parents=True, exist_ok=True)

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
            fd = os.open(self.partial_path(digest), os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # an upload is writing it now: nothing to resume from
        else:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

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

    def prune_uploads(self, older_than: float) -> tuple[int, int]:
        # Another process may be writing a fresh one: only files untouched for a while go.
        files = freed = 0
        for path in (self.root / "uploads").iterdir():
            try:
                st = path.stat()
                if st.st_mtime >= older_than:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            files += 1
            freed += st.st_size
        return files, freed
