"""Putting files into the registry: push a folder or files as a new READY version.

Uploads are content-addressed: the client hashes each file first and asks the registry
what it has, so known content moves no bytes (`link_artifact`) and an interrupted upload
resumes from the offset the registry reports. Pulling versions out is the job of
`forgeline.client.cache.VersionCache`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from forgeline.client import exceptions
from forgeline.client.manifests import RESERVED_PREFIX, manifest_digest, sha256_file
from forgeline.client.registry import RegistryClient
from forgeline.v1 import registry_pb2

log = logging.getLogger(__name__)

# bench/registry.py swept 64 KiB..4 MiB over loopback: 256 KiB moved the most bytes per second.
CHUNK_BYTES = 256 * 1024

# Called with (path, bytes done, bytes total) as a transfer advances.
Progress = Callable[[str, int, int], None]


def folder_files(root: Path) -> list[tuple[str, Path]]:
    """Every file under `root` as (relative '/'-path, file), Forgeline's own markers left out."""
    return sorted(
        (p.relative_to(root).as_posix(), p)
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(RESERVED_PREFIX)
    )


def _chunks(
    local: Path, offset: int, path: str, size: int, progress: Progress | None, chunk_bytes: int
) -> Iterator[bytes]:
    done = offset
    with open(local, "rb") as f:
        f.seek(offset)
        while chunk := f.read(chunk_bytes):
            done += len(chunk)
            yield chunk
            if progress:
                progress(path, done, size)


def upload_file(
    registry: RegistryClient,
    model: str,
    version: int,
    path: str,
    local: Path,
    *,
    digest: tuple[str, int] | None = None,
    progress: Progress | None = None,
    attempts: int = 5,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[registry_pb2.ManifestEntry, int]:
    """Adds one local file to a PENDING version as `path`.

    Returns the manifest entry and the bytes actually sent (0 when the registry already
    had the content). After UNAVAILABLE it resumes from the registry's offset.

    Raises:
        InvalidArgument: the registry refused the path or the content.
        Unavailable: still unreachable after `attempts` tries.
    """
    sha, size = digest or sha256_file(local)
    for attempt in range(1, attempts + 1):
        stat = registry.stat_upload(sha, size)
        if stat.presence == registry_pb2.BLOB_PRESENCE_PRESENT:
            entry = registry_pb2.ManifestEntry(path=path, sha256=sha, size=size)
            registry.link_artifact(model, version, entry)
            if progress:
                progress(path, size, size)
            return entry, 0
        header = registry_pb2.UploadHeader(
            model=model, version=version, path=path, size=size, sha256=sha, offset=stat.offset
        )
        chunks = _chunks(local, stat.offset, path, size, progress, chunk_bytes)
        try:
            response = registry.upload_artifact(header, chunks)
            return response.entry, size - stat.offset
        except exceptions.Unavailable:
            if attempt == attempts:
                raise
            log.info("upload of %s interrupted; resuming (attempt %d)", path, attempt + 1)
        except exceptions.FailedPrecondition as exc:
            # Someone else started resuming the same content first: ask again (the
            # registry then has us upload a private copy, or it has the blob by now).
            if exc.type != "UPLOAD_IN_PROGRESS" or attempt == attempts:
                raise
        time.sleep(min(0.2 * 2**attempt, 5))
    raise AssertionError("unreachable")


def push_folder(
    registry: RegistryClient, local_dir: Path, model: str, kind: int, **options: Any
) -> registry_pb2.Version:
    """Registers every file under `local_dir` as a new READY version (see `push_files`)."""
    return push_files(registry, folder_files(Path(local_dir)), model, kind, **options)


def push_file(
    registry: RegistryClient,
    local_file: Path,
    model: str,
    kind: int,
    *,
    name: str | None = None,
    **options: Any,
) -> registry_pb2.Version:
    """Registers one file, stored as `name` (default its file name); see `push_files`."""
    local_file = Path(local_file)
    return push_files(registry, [(name or local_file.name, local_file)], model, kind, **options)


def push_files(
    registry: RegistryClient,
    files: list[tuple[str, Path]],
    model: str,
    kind: int,
    *,
    parents: Iterable[str] = (),
    lineage: registry_pb2.Lineage | None = None,
    metadata: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    description: str = "",
    reuse_identical: bool = False,
    digests: Mapping[str, tuple[str, int]] | None = None,
    progress: Progress | None = None,
) -> registry_pb2.Version:
    """Registers local files, each under its relative path, as a new READY version of `model`.

    Creates the model if needed. Known content moves no bytes. With `reuse_identical`, the
    latest READY version is returned instead when its content is identical (same manifest
    digest). On failure the PENDING version is marked FAILED and the error re-raised.

    Args:
        registry: The registry.
        files: (path in the version, local file) pairs.
        model: Model name.
        kind: A `VersionKind`.
        parents: References of the versions it derives from (base first).
        lineage: Producing job, dataset digest, spec.
        metadata: Free-form metadata.
        metrics: Metrics of the producing job.
        description: Free text.
        reuse_identical: Return an identical latest version instead of adding one.
        digests: (sha256, size) by path, for files the caller hashed already.
        progress: Called with (path, bytes done, bytes total) as uploads advance.

    Raises:
        InvalidArgument: a path, name or parent the registry refuses.
        NotFound: a parent does not exist.
    """
    known = digests or {}
    digests = {rel: known.get(rel) or sha256_file(path) for rel, path in files}
    if reuse_identical:
        wanted = manifest_digest((rel, sha, size) for rel, (sha, size) in digests.items())
        try:
            latest = registry.get_version(model)
        except exceptions.NotFound:  # no READY version yet: push normally
            latest = None
        if latest is not None and latest.manifest_digest == wanted and latest.kind == kind:
            return latest

    version = registry.create_version(
        model,
        kind,
        parents=parents,
        lineage=lineage,
        metadata=metadata,
        description=description,
        create_model=True,
    )
    try:
        for rel, path in files:
            upload_file(
                registry, model, version.number, rel, path, digest=digests[rel], progress=progress
            )
        return registry.commit_version(
            model, version.number, expected_paths=[rel for rel, _ in files], metrics=metrics
        )
    except BaseException as exc:
        try:
            registry.fail_version(model, version.number, f"push failed: {exc}"[:1000])
        except Exception:
            log.warning("could not mark %s:%d FAILED", model, version.number)
        raise
