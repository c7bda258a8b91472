"""Garbage collection and uploads are safe together, across replicas; nothing is kept forever."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.registry import blobs as blobs_module
from forgeline.registry.blobs import LocalBlobStore
from forgeline.registry.domain import Entry
from forgeline.registry.housekeeping import StoreLimits
from forgeline.registry.store import RegistryStore
from forgeline.v1 import common_pb2, registry_pb2

BASE = registry_pb2.VERSION_KIND_BASE
NO_GRACE = StoreLimits(gc_grace_seconds=0)


def open_store(db_url: str, root: Path, limits: StoreLimits | None = None) -> RegistryStore:
    return RegistryStore(db_url, LocalBlobStore(root), limits)


def upload_bytes(store: RegistryStore, model: str, number: int, data: bytes) -> Entry:
    """What UploadArtifact does up to the moment the bytes have landed, before linking."""
    digest = hashlib.sha256(data).hexdigest()
    store.check_upload(model, number, "w.bin", digest, len(data))
    writer = store.blobs.writer(digest, len(data), 0)
    writer.write(data)
    writer.finish()
    return Entry("w.bin", digest, len(data))


def test_collection_the_moment_the_bytes_land_takes_nothing(db_url, tmp_path):
    store = open_store(db_url, tmp_path / "blobs")
    v = store.create_version("m", BASE, create_model=True)
    entry = upload_bytes(store, "m", v.number, os.urandom(100_000))
    report = store.garbage_collect()
    assert report.blobs_deleted == 0
    store.add_entry("m", v.number, entry)
    assert store.commit("m", v.number, ["w.bin"]).state == registry_pb2.VERSION_STATE_READY
    assert store.blobs.size_of(entry.sha256) == 100_000
    store.close()


def test_a_second_replica_does_not_collect_what_the_first_is_uploading(db_url, tmp_path):
    root = tmp_path / "shared-blobs"
    first, second = open_store(db_url, root), open_store(db_url, root)
    v = first.create_version("m", BASE, create_model=True)
    entry = upload_bytes(first, "m", v.number, os.urandom(50_000))
    assert second.garbage_collect().blobs_deleted == 0
    first.add_entry("m", v.number, entry)
    first.commit("m", v.number, ["w.bin"])
    assert second.blobs.size_of(entry.sha256) == 50_000
    first.close()
    second.close()


def test_unused_blobs_go_after_the_grace_period(db_url, tmp_path):
    store = open_store(db_url, tmp_path / "blobs", NO_GRACE)
    v = store.create_version("m", BASE, create_model=True)
    upload_bytes(store, "m", v.number, b"never linked")
    store.fail("m", v.number, "the producer gave up")
    report = store.garbage_collect()
    assert (report.blobs_deleted, report.bytes_freed) == (1, len(b"never linked"))
    assert list(store.blobs.digests()) == []
    store.close()


def test_abandoned_pending_versions_expire_and_free_their_blobs(db_url, tmp_path):
    store = open_store(
        db_url, tmp_path / "blobs", StoreLimits(gc_grace_seconds=0, pending_ttl_seconds=0)
    )
    v = store.create_version("m", BASE, create_model=True)
    entry = upload_bytes(store, "m", v.number, b"half a version")
    store.add_entry("m", v.number, entry)
    time.sleep(0.01)
    report = store.garbage_collect()
    assert (report.versions_expired, report.blobs_deleted) == (1, 1)
    abandoned = store.get_version(common_pb2.ModelRef(name="m", version=v.number))
    assert abandoned.state == registry_pb2.VERSION_STATE_FAILED
    assert "abandoned" in abandoned.failure_reason
    store.close()


def test_a_fresh_pending_version_keeps_its_blobs(db_url, tmp_path):
    store = open_store(db_url, tmp_path / "blobs", NO_GRACE)
    v = store.create_version("m", BASE, create_model=True)
    store.add_entry("m", v.number, upload_bytes(store, "m", v.number, b"still coming"))
    assert store.garbage_collect().blobs_deleted == 0
    store.close()


def test_stale_partial_uploads_are_pruned_and_fresh_ones_kept(db_url, tmp_path):
    store = open_store(db_url, tmp_path / "blobs", StoreLimits(gc_grace_seconds=600))
    for data in (b"old interrupted upload", b"upload still going"):
        writer = store.blobs.writer(hashlib.sha256(data).hexdigest(), len(data) + 10, 0)
        writer.write(data)
        writer.suspend()
    old = store.blobs.partial_path(hashlib.sha256(b"old interrupted upload").hexdigest())
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert store.garbage_collect().uploads_pruned == 1
    assert not old.exists()
    fresh = store.blobs.partial_path(hashlib.sha256(b"upload still going").hexdigest())
    assert fresh.exists()
    store.close()


def test_uploads_over_the_size_cap_or_the_quota_are_refused_before_any_byte(db_url, tmp_path):
    store = open_store(db_url, tmp_path / "blobs", StoreLimits(max_file_bytes=100, quota_bytes=150))
    v = store.create_version("m", BASE, create_model=True)
    with pytest.raises(exceptions.InvalidArgument) as info:
        store.check_upload("m", v.number, "big.bin", "a" * 64, 101)
    assert info.value.violations[0].field == "header.size"
    upload_bytes(store, "m", v.number, b"x" * 100)
    with pytest.raises(exceptions.ResourceExhausted, match="quota"):
        store.check_upload("m", v.number, "more.bin", "b" * 64, 60)
    store.close()


def test_one_upload_owns_the_partial_file_across_processes(tmp_path):
    # Two stores over one folder stand for two registry replicas (or processes).
    data = os.urandom(10_000)
    digest = hashlib.sha256(data).hexdigest()
    first = LocalBlobStore(tmp_path).writer(digest, len(data), 0)
    second = LocalBlobStore(tmp_path).writer(digest, len(data), 0)
    assert (first.resumable, second.resumable) == (True, False)
    assert LocalBlobStore(tmp_path).partial_size(digest) == 0  # held: nothing to resume
    for writer in (first, second):
        writer.write(data)
    second.finish()
    first.finish()
    assert LocalBlobStore(tmp_path).open(digest).read() == data
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == []


def test_a_stored_blob_is_read_only_and_its_folder_synced_after_the_rename(tmp_path, monkeypatch):
    synced: list[tuple[Path, bool]] = []
    store = LocalBlobStore(tmp_path)
    data = b"durable"
    digest = hashlib.sha256(data).hexdigest()
    final = store.blob_path(digest)
    real = blobs_module._fsync_dir
    monkeypatch.setattr(
        blobs_module, "_fsync_dir", lambda path: (synced.append((path, final.exists())), real(path))
    )
    writer = store.writer(digest, len(data), 0)
    writer.write(data)
    writer.finish()
    assert (final.parent, True) in synced  # the rename itself was made durable
    assert final.stat().st_mode & 0o222 == 0
