"""Registry versions as local, read-only folders: the one way anything pulls a version.

`VersionCache.pull(ref)` pins the reference to one READY version, and makes its files
available as `<root>/<model>/<number>`:

- once per machine: processes pulling the same version take turns through a file lock,
  and whoever comes second finds the folder complete;
- verified: every downloaded file's sha256 and size are checked before it is kept, and an
  interrupted download resumes from the bytes it has;
- atomically: the folder appears only complete, with a marker holding the manifest digest;
- read-only: files are published without write permission. When the registry's blob
  store is on this machine (under one of `local_roots`) files are hard-linked from it
  instead of copied, and a write through such a link would corrupt the store;
- defensively: every path, digest and local path the registry sends is checked first, so
  a broken or hostile registry cannot make the cache write outside its folder.

The trainer, the inference service, the quantizer and the evaluator all pull through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from forgeline.client import exceptions
from forgeline.client.base import RefLike
from forgeline.client.channel import ChannelOptions
from forgeline.client.labels import label
from forgeline.client.manifests import RESERVED_PREFIX, check_manifest
from forgeline.client.refs import RefError, check_name
from forgeline.client.registry import RegistryClient
from forgeline.v1 import registry_pb2

log = logging.getLogger(__name__)

COMPLETE_MARKER = f"{RESERVED_PREFIX}complete"
READ_ONLY = 0o444
_BLOCK = 4 * 1024 * 1024

# Called with (path, bytes done, bytes total) as a pull advances.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CacheConfig:
    """Everything a process needs to open a `VersionCache` (picklable, for Ray workers).

    Attributes:
        registry: ``host:port`` of the registry.
        channel: Token and TLS for it.
        root: The cache folder on this machine.
        local_roots: Folders the registry's blobs may be hard-linked from (its data folder
            when it runs on this machine); empty always downloads.
    """

    registry: str
    channel: ChannelOptions
    root: Path
    local_roots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class CachedVersion:
    """A pulled version: its local folder and what the registry says about it."""

    path: Path
    version: registry_pb2.Version

    @property
    def ref(self) -> str:
        """The pinned reference `model:number`."""
        return f"{self.version.model}:{self.version.number}"


class VersionCache:
    """Resolves references and pulls versions into a folder shared by local processes.

    Thread-safe and process-safe.

    Args:
        registry: The registry client to use (borrowed; see `open` for an owned one).
        root: The cache folder.
        local_roots: Folders blobs may be linked from when the registry says they lie there.
    """

    def __init__(self, registry: RegistryClient, root: Path, *, local_roots: Iterable[Path] = ()):
        self.registry = registry
        self.root = Path(root)
        self.local_roots = tuple(Path(p).resolve() for p in local_roots)
        self._owned = False

    @classmethod
    def open(cls, config: CacheConfig) -> VersionCache:
        """A cache with its own registry connection (closed by `close`)."""
        cache = cls(
            RegistryClient(config.registry, config.channel),
            config.root,
            local_roots=config.local_roots,
        )
        cache._owned = True
        return cache

    def close(self) -> None:
        """Closes the registry connection if this cache opened it."""
        if self._owned:
            self.registry.close()

    def __enter__(self) -> VersionCache:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def resolve(self, ref: RefLike) -> registry_pb2.Version:
        """Pins a reference to one READY version.

        Raises:
            NotFound: no such model, version or alias.
            FailedPrecondition: the version is not READY.
        """
        version = self.registry.get_version(ref)
        if version.state != registry_pb2.VERSION_STATE_READY:
            pinned = f"{version.model}:{version.number}"
            state = label(registry_pb2.VersionState, version.state)
            raise exceptions.FailedPrecondition(
                f"version {pinned} is {state}, not READY",
                subject=pinned,
                type="VERSION_STATE",
            )
        return version

    def pull(self, ref: RefLike, progress: Progress | None = None) -> CachedVersion:
        """Makes a READY version available as a complete, read-only local folder.

        Raises:
            NotFound: no such version.
            FailedPrecondition: the version is not READY.
            InvalidArgument: the registry sent a manifest that breaks the rules.
            OSError: a downloaded file did not match its digest.
        """
        manifest = self.registry.get_manifest(ref, include_local_paths=bool(self.local_roots))
        version = manifest.version
        entries = list(manifest.entries)
        _check_version(version)
        check_manifest((e.path, e.sha256, e.size) for e in entries)
        folder = self.root / version.model / str(version.number)
        if _complete(folder, version.manifest_digest):
            return CachedVersion(folder, version)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _locked(folder.parent / f"{RESERVED_PREFIX}{version.number}.lock"):
            # Whoever held the lock before may have finished it.
            if _complete(folder, version.manifest_digest):
                return CachedVersion(folder, version)
            staging = folder.parent / f"{RESERVED_PREFIX}{version.number}.partial"
            staging.mkdir(exist_ok=True)
            pinned = f"{version.model}:{version.number}"
            for entry in entries:
                target = staging / entry.path
                if target.is_file() and target.stat().st_size == entry.size:
                    continue  # kept by an interrupted pull, verified when it was written
                target.parent.mkdir(parents=True, exist_ok=True)
                source = self._local_blob(manifest.local_paths.get(entry.path, ""), entry)
                if source is not None and _link(source, target):
                    if progress:
                        progress(entry.path, entry.size, entry.size)
                    continue
                self._download(pinned, entry, target, progress)
            marker = staging / COMPLETE_MARKER
            marker.write_text(version.manifest_digest)
            marker.chmod(READ_ONLY)
            if folder.exists():
                # Not complete (checked above under the lock): nobody can be using it.
                shutil.rmtree(folder)
            os.replace(staging, folder)
        log.info("pulled %s into %s", pinned, folder)
        return CachedVersion(folder, version)

    def _local_blob(self, path: str, entry: registry_pb2.ManifestEntry) -> Path | None:
        """The registry's own copy of a blob, if it is a trusted local file of the right size."""
        if not path or not self.local_roots:
            return None
        candidate = Path(path)
        if not candidate.is_absolute():
            return None
        real = candidate.resolve()
        if not any(real.is_relative_to(root) for root in self.local_roots):
            log.warning("ignoring a local path outside the trusted folders: %s", path)
            return None
        try:
            st = real.stat()
        except OSError:
            return None  # not on this machine after all
        if not real.is_file() or st.st_size != entry.size:
            return None
        return real

    def _download(
        self,
        ref: str,
        entry: registry_pb2.ManifestEntry,
        target: Path,
        progress: Progress | None,
        attempts: int = 5,
    ) -> None:
        part = target.with_name(f"{RESERVED_PREFIX}{target.name}.part")
        for attempt in range(1, attempts + 1):
            offset = part.stat().st_size if part.exists() else 0
            if offset > entry.size:
                part.unlink()
                offset = 0
            digest = hashlib.sha256()
            with open(part, "a+b") as f:
                # Hash while writing; a resumed file first hashes the prefix it already has.
                f.seek(0)
                while block := f.read(_BLOCK):
                    digest.update(block)
                try:
                    for message in self.registry.download_artifact(ref, entry.path, offset):
                        f.write(message.chunk)
                        digest.update(message.chunk)
                        if progress:
                            progress(entry.path, message.offset + len(message.chunk), entry.size)
                except exceptions.Unavailable:
                    if attempt == attempts:
                        raise
                    time.sleep(min(0.2 * 2**attempt, 5))
                    continue
            if (digest.hexdigest(), part.stat().st_size) != (entry.sha256, entry.size):
                part.unlink()
                raise OSError(f"{entry.path}: downloaded content does not match its digest")
            part.chmod(READ_ONLY)
            os.replace(part, target)
            return


def _check_version(version: registry_pb2.Version) -> None:
    try:
        check_name(version.model, "version.model")
    except RefError as exc:
        raise exceptions.InvalidArgument("version.model", str(exc)) from None
    if version.number < 1:
        raise exceptions.InvalidArgument("version.number", "must be at least 1")


def _complete(folder: Path, manifest_digest: str) -> bool:
    marker = folder / COMPLETE_MARKER
    try:
        return marker.read_text().strip() == manifest_digest
    except OSError:
        return False


def _link(source: Path, target: Path) -> bool:
    """Hard-links the store's read-only blob into the cache; False when it cannot."""
    try:
        os.link(source, target)
    except OSError:
        return False  # another filesystem: download it instead
    # Blobs are stored read-only; this also covers blobs stored before that rule.
    target.chmod(READ_ONLY)
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads: each opens its own file)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
