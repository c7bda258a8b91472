"""Pushing files: content-addressed, resumed after a broken connection, failed cleanly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.transfer import folder_files, push_files, upload_file
from forgeline.v1 import registry_pb2


class FakeRegistry:
    """The registry calls `transfer` makes, with a store that keeps what it was sent.

    `break_after` chunks of the first upload arrive, then the connection "breaks".
    """

    def __init__(self, break_after: int | None = None):
        self.blobs: dict[str, bytes] = {}
        self.partial: dict[str, bytes] = {}
        self.break_after = break_after
        self.offsets: list[int] = []
        self.calls: list[str] = []
        self.entries: list[registry_pb2.ManifestEntry] = []

    def stat_upload(self, sha256: str, size: int) -> registry_pb2.StatUploadResponse:
        self.calls.append("stat")
        if sha256 in self.blobs:
            return registry_pb2.StatUploadResponse(presence=registry_pb2.BLOB_PRESENCE_PRESENT)
        have = len(self.partial.get(sha256, b""))
        presence = registry_pb2.BLOB_PRESENCE_PARTIAL if have else registry_pb2.BLOB_PRESENCE_ABSENT
        return registry_pb2.StatUploadResponse(presence=presence, offset=have)

    def upload_artifact(self, header, chunks):
        self.calls.append("upload")
        self.offsets.append(header.offset)
        data = self.partial.get(header.sha256, b"")[: header.offset]
        for i, chunk in enumerate(chunks):
            if self.break_after is not None and i == self.break_after:
                self.break_after = None
                self.partial[header.sha256] = data
                raise exceptions.Unavailable("connection reset")
            data += chunk
        assert hashlib.sha256(data).hexdigest() == header.sha256
        self.blobs[header.sha256] = data
        entry = registry_pb2.ManifestEntry(path=header.path, sha256=header.sha256, size=len(data))
        self.entries.append(entry)
        return registry_pb2.UploadArtifactResponse(entry=entry)

    def link_artifact(self, model, version, entry):
        self.calls.append("link")
        self.entries.append(entry)
        return entry

    def create_version(self, model, kind, **fields):
        self.calls.append("create")
        return registry_pb2.Version(model=model, number=1, kind=kind)

    def commit_version(self, model, version, expected_paths=(), metrics=None):
        self.calls.append("commit")
        assert sorted(expected_paths) == sorted(e.path for e in self.entries)
        return registry_pb2.Version(model=model, number=version, state=2)

    def fail_version(self, model, version, reason):
        self.calls.append(f"fail: {reason}")

    def get_version(self, ref):
        raise exceptions.NotFound("model", str(ref))


@pytest.fixture
def blob(tmp_path) -> Path:
    path = tmp_path / "w.bin"
    path.write_bytes(os.urandom(1_000_003))
    return path


def test_an_interrupted_upload_resumes_where_the_registry_stopped(blob, monkeypatch):
    monkeypatch.setattr("forgeline.client.transfer.time.sleep", lambda _: None)
    registry = FakeRegistry(break_after=2)
    entry, sent = upload_file(registry, "m", 1, "w.bin", blob, chunk_bytes=100_000)
    assert registry.offsets == [0, 200_000]  # the second try starts where the first broke
    assert sent == 1_000_003 - 200_000
    assert registry.blobs[entry.sha256] == blob.read_bytes()


def test_known_content_is_linked_without_moving_a_byte(blob):
    registry = FakeRegistry()
    upload_file(registry, "m", 1, "w.bin", blob)
    registry.calls.clear()
    entry, sent = upload_file(registry, "m", 2, "copy.bin", blob)
    assert (sent, registry.calls, entry.path) == (0, ["stat", "link"], "copy.bin")


def test_an_upload_that_keeps_breaking_gives_up(blob, monkeypatch):
    monkeypatch.setattr("forgeline.client.transfer.time.sleep", lambda _: None)

    class Broken(FakeRegistry):
        def upload_artifact(self, header, chunks):
            self.offsets.append(header.offset)
            raise exceptions.Unavailable("down")

    registry = Broken()
    with pytest.raises(exceptions.Unavailable):
        upload_file(registry, "m", 1, "w.bin", blob, attempts=3)
    assert len(registry.offsets) == 3


def test_a_failed_push_marks_its_version_failed(blob, monkeypatch):
    registry = FakeRegistry()

    def refuse(header, chunks):
        raise exceptions.InvalidArgument("header.path", "bad")

    monkeypatch.setattr(registry, "upload_artifact", refuse)
    with pytest.raises(exceptions.InvalidArgument):
        push_files(registry, [("w.bin", blob)], "m", registry_pb2.VERSION_KIND_BASE)
    assert registry.calls[-1].startswith("fail: push failed: header.path: bad")
    assert "commit" not in registry.calls


def test_folder_files_leave_out_forgeline_bookkeeping(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / ".forgeline-complete").write_text("d")
    (tmp_path / "a" / ".forgeline-x.txt.part").write_text("p")
    assert [rel for rel, _ in folder_files(tmp_path)] == ["a/x.txt", "config.json"]
