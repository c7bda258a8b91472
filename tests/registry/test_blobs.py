"""The local blob store: atomic publication, verification, resume, concurrent uploads."""

from __future__ import annotations

import hashlib
import os

import pytest

from forgeline.client import exceptions
from forgeline.registry.blobs import LocalBlobStore

DATA = os.urandom(300_000)
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path):
    return LocalBlobStore(tmp_path / "blobs")


def test_blob_is_visible_only_after_verified_finish(store):
    writer = store.writer(DIGEST, len(DATA), 0)
    writer.write(DATA[:1000])
    assert store.size_of(DIGEST) is None
    writer.write(DATA[1000:])
    assert store.size_of(DIGEST) is None
    writer.finish()
    assert store.size_of(DIGEST) == len(DATA)
    with store.open(DIGEST) as f:
        assert f.read() == DATA
    assert store.partial_size(DIGEST) == 0
    assert list(store.digests()) == [DIGEST]


def test_digest_mismatch_is_rejected_and_nothing_is_kept(store):
    wrong = "0" * 64
    writer = store.writer(wrong, len(DATA), 0)
    writer.write(DATA)
    with pytest.raises(exceptions.InvalidArgument) as info:
        writer.finish()
    assert info.value.violations[0].field == "header.sha256"
    assert store.size_of(wrong) is None and store.partial_size(wrong) == 0


def test_more_bytes_than_declared_is_rejected(store):
    writer = store.writer(DIGEST, 10, 0)
    with pytest.raises(exceptions.InvalidArgument) as info:
        writer.write(DATA[:11])
    assert info.value.violations[0].field == "header.size"
    writer.suspend()


def test_short_upload_names_the_resume_offset(store):
    writer = store.writer(DIGEST, len(DATA), 0)
    writer.write(DATA[:5000])
    with pytest.raises(exceptions.InvalidArgument, match="resume from offset 5000"):
        writer.finish()


def test_interrupted_upload_resumes_from_its_partial(store):
    writer = store.writer(DIGEST, len(DATA), 0)
    writer.write(DATA[:123_456])
    writer.suspend()
    assert store.partial_size(DIGEST) == 123_456
    resumed = store.writer(DIGEST, len(DATA), 123_456)
    resumed.write(DATA[123_456:])
    resumed.finish()
    with store.open(DIGEST) as f:
        assert f.read() == DATA


def test_resume_beyond_what_is_stored_is_refused(store):
    writer = store.writer(DIGEST, len(DATA), 0)
    writer.write(DATA[:100])
    writer.suspend()
    with pytest.raises(exceptions.FailedPrecondition, match="has 100 bytes"):
        store.writer(DIGEST, len(DATA), 5000)


def test_resume_from_an_earlier_offset_rewrites_the_rest(store):
    writer = store.writer(DIGEST, len(DATA), 0)
    writer.write(DATA[:200_000])
    writer.suspend()
    resumed = store.writer(DIGEST, len(DATA), 50_000)
    resumed.write(DATA[50_000:])
    resumed.finish()
    with store.open(DIGEST) as f:
        assert f.read() == DATA


def test_concurrent_uploads_of_one_blob_both_succeed_and_store_it_once(store):
    first = store.writer(DIGEST, len(DATA), 0)
    second = store.writer(DIGEST, len(DATA), 0)  # the first holds the resumable partial
    first.write(DATA[:1000])
    second.write(DATA)
    second.finish()
    first.write(DATA[1000:])
    first.finish()
    assert list(store.digests()) == [DIGEST]
    assert not list((store.root / "uploads").iterdir())
    with store.open(DIGEST) as f:
        assert f.read() == DATA


def test_delete_and_missing_blobs(store):
    with pytest.raises(exceptions.NotFound):
        store.open(DIGEST)
    writer = store.writer(DIGEST, len(DATA), 0)
    writer.write(DATA)
    writer.finish()
    assert store.delete(DIGEST) == len(DATA)
    assert store.delete(DIGEST) == 0
