"""Moving files in and out of the registry: push a folder or file as a version, pull one.

Uploads are content-addressed: the client hashes each file first and asks the registry
what it has, so known content moves no bytes (`LinkArtifact`) and an interrupted upload
resumes from the offset the registry reports. Downloads verify every file's sha256,
resume from partial files, and publish the folder atomically; a folder already complete
is not downloaded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

from forgeline.client import exceptions
from forgeline.client.digests import manifest_digest, sha256_file
from forgeline.client.refs import parse_ref
from forgeline.client.services import RegistryClient
from forgeline.client.status import raise_for_rpc_error
from forgeline.v1 import registry_pb2

log = logging.getLogger(__name__)

# bench/registry.py swept 64 KiB..4 MiB over loopback: 256 KiB moved the most bytes per second.
CHUNK_BYTES = 256 * 1024
COMPLETE_MARKER = ".forgeline-version"

# Called with (path, bytes done, bytes total) as a transfer advances.
Progress = Callable[[str, int, int], None]


def _files(root: Path) -> list[tuple[str, Path]]:
    return sorted(
        (p.relative_to(root).as_posix(), p)
        for p in root.rglob("*")
        # Forgeline's own bookkeeping files (completion markers) are not content.
        if p.is_file() and not p.name.startswith(".forgeline-")
    )


def _chunks(
    header: registry_pb2.UploadHeader, local: Path, progress: Progress | None, chunk_bytes: int
) -> Iterator:
    yield registry_pb2.UploadArtifactRequest(header=header)
    done = header.offset
    with open(local, "rb") as f:
        f.seek(header.offset)
        while chunk := f.read(chunk_bytes):
            done += len(chunk)
            yield registry_pb2.UploadArtifactRequest(chunk=chunk)
            if progress:
                progress(header.path, done, header.size)


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
    had the content). Retries after UNAVAILABLE by resuming from the registry's offset.
    """
    sha, size = digest or sha256_file(local)
    for attempt in range(1, attempts + 1):
        stat = registry.call("StatUpload", registry_pb2.StatUploadRequest(sha256=sha, size=size))
        if stat.presence == registry_pb2.BLOB_PRESENCE_PRESENT:
            entry = registry_pb2.ManifestEntry(path=path, sha256=sha, size=size)
            registry.call(
                "LinkArtifact",
                registry_pb2.LinkArtifactRequest(model=model, version=version, entry=entry),
            )
            if progress:
                progress(path, size, size)
            return entry, 0
        header = registry_pb2.UploadHeader(
            model=model, version=version, path=path, size=size, sha256=sha, offset=stat.offset
        )
        try:
            resp = registry.stub.UploadArtifact(
                _chunks(header, local, progress, chunk_bytes), timeout=None
            )
            return resp.entry, size - stat.offset
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts:
                raise_for_rpc_error(err)
            log.info("upload of %s interrupted; resuming (attempt %d)", path, attempt + 1)
            time.sleep(min(0.2 * 2**attempt, 5))
    raise AssertionError("unreachable")


def push_folder(
    registry: RegistryClient, local_dir: Path, model: str, kind: int, **options: Any
) -> registry_pb2.Version:
    """Registers every file under `local_dir` as a new READY version (see `push_files`)."""
    return push_files(registry, _files(Path(local_dir)), model, kind, **options)


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
        progress: Called with (path, bytes done, bytes total) as uploads advance.
    """
    digests = {rel: sha256_file(path) for rel, path in files}
    if reuse_identical:
        wanted = manifest_digest((rel, sha, size) for rel, (sha, size) in digests.items())
        try:
            latest = registry.get_version(model)
        except exceptions.NotFound:  # no READY version yet: push normally
            latest = None
        if latest is not None and latest.manifest_digest == wanted and latest.kind == kind:
            return latest

    version = registry.call(
        "CreateVersion",
        registry_pb2.CreateVersionRequest(
            model=model,
            kind=kind,
            parents=[parse_ref(p) for p in parents],
            lineage=lineage,
            metadata=metadata or {},
            description=description,
            create_model=True,
        ),
    ).version
    try:
        for rel, path in files:
            upload_file(
                registry, model, version.number, rel, path, digest=digests[rel], progress=progress
            )
        return registry.call(
            "CommitVersion",
            registry_pb2.CommitVersionRequest(
                model=model,
                version=version.number,
                expected_paths=[rel for rel, _ in files],
                metrics=metrics or {},
            ),
        ).version
    except BaseException as exc:
        try:
            registry.call(
                "FailVersion",
                registry_pb2.FailVersionRequest(
                    model=model, version=version.number, reason=f"push failed: {exc}"[:1000]
                ),
            )
        except Exception:
            log.warning("could not mark %s:%d FAILED", model, version.number)
        raise


def _download(
    registry: RegistryClient,
    ref: str,
    entry: registry_pb2.ManifestEntry,
    target: Path,
    progress: Progress | None,
    attempts: int = 5,
) -> None:

    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        offset = part.stat().st_size if part.exists() else 0
        if offset > entry.size:
            part.unlink()
            offset = 0
        # Hash while writing; a resumed file first hashes the prefix it already has.
        digest = hashlib.sha256()
        with open(part, "a+b") as f:
            f.seek(0)
            while block := f.read(4 * 1024 * 1024):
                digest.update(block)
            try:
                request = registry_pb2.DownloadArtifactRequest(
                    ref=parse_ref(ref), path=entry.path, offset=offset
                )
                for message in registry.stub.DownloadArtifact(request):
                    f.write(message.chunk)
                    digest.update(message.chunk)
                    if progress:
                        progress(entry.path, message.offset + len(message.chunk), entry.size)
                break
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts:
                    raise_for_rpc_error(err)
        time.sleep(min(0.2 * 2**attempt, 5))
    if (digest.hexdigest(), part.stat().st_size) != (entry.sha256, entry.size):
        part.unlink()
        raise OSError(f"{entry.path}: downloaded content does not match its digest; try again")
    os.replace(part, target)


def pull_version(
    registry: RegistryClient,
    ref: str,
    dest_root: Path,
    *,
    local_blobs: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Makes a READY version available as a local folder `dest_root/<model>/<number>`.

    Resolves `ref` once (so `name@alias` is pinned to one number), skips the work when the
    folder is already complete, and otherwise fetches each file: hard-linked from
    `local_blobs` (the registry's blob directory, when on the same filesystem) or streamed
    with resume and sha256 verification. The folder appears only complete.
    """
    resp = registry.call(
        "GetManifest",
        registry_pb2.GetManifestRequest(ref=parse_ref(ref)),
    )
    version = resp.version
    dest = Path(dest_root) / version.model / str(version.number)
    marker = dest / COMPLETE_MARKER
    if marker.exists() and marker.read_text().strip() == version.manifest_digest:
        return dest
    pinned = f"{version.model}:{version.number}"
    staging = dest.with_name(f".{version.number}.partial")
    staging.mkdir(parents=True, exist_ok=True)
    for entry in resp.entries:
        target = staging / entry.path
        if target.exists() and target.stat().st_size == entry.size:
            continue  # completed by an earlier, interrupted pull (verified when written)
        blob = local_blobs / "sha256" / entry.sha256[:2] / entry.sha256 if local_blobs else None
        if blob is not None and blob.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(blob, target)
            except OSError:
                shutil.copyfile(blob, target)
            if progress:
                progress(entry.path, entry.size, entry.size)
            continue
        _download(registry, pinned, entry, target, progress)
    (staging / COMPLETE_MARKER).write_text(version.manifest_digest)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)
    return dest
