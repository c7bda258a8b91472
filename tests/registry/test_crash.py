"""A registry process killed with SIGKILL mid-upload loses nothing committed, exposes nothing
partial, and the upload resumes after restart."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time

import pytest

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.channel import ChannelOptions
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_folder, upload_file
from forgeline.common.settings import Settings
from forgeline.registry.blobs import LocalBlobStore
from forgeline.registry.service import blob_root
from forgeline.v1 import registry_pb2
from tests.helpers import free_port, start_service, wait_for

pytestmark = pytest.mark.e2e


def test_sigkill_mid_upload(tmp_path):
    env = {**os.environ, "FORGELINE_HOME": str(tmp_path / "home")}
    port = free_port()
    proc = start_service("registry", env, port=port)
    address = f"127.0.0.1:{port}"
    committed = tmp_path / "committed"
    committed.mkdir()
    (committed / "w.bin").write_bytes(os.urandom(2_000_000))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    try:
        registry = RegistryClient(address, ChannelOptions(retries=False))
        push_folder(registry, committed, "safe", registry_pb2.VERSION_KIND_BASE)
        pending = registry.create_version(
            "victim", registry_pb2.VERSION_KIND_BASE, create_model=True
        )
        gate = threading.Event()
        outcome: list[BaseException] = []

        def chunks():
            data = big.read_bytes()
            for i in range(0, 8 * 1024 * 1024, 1024 * 1024):
                yield data[i : i + 1024 * 1024]
            gate.wait(30)

        def upload() -> None:
            header = registry_pb2.UploadHeader(
                model="victim", version=1, path="big.bin", size=big.stat().st_size, sha256=sha
            )
            try:
                registry.upload_artifact(header, chunks())
            except BaseException as exc:  # the connection just dies
                outcome.append(exc)

        uploader = threading.Thread(target=upload)
        uploader.start()
        registry_settings = Settings.load("registry", home=tmp_path / "home")
        partial = LocalBlobStore(blob_root(registry_settings)).partial_path(sha)
        wait_for(lambda: partial.exists() and partial.stat().st_size >= 8 * 1024 * 1024)
        proc.kill()
        gate.set()
        uploader.join(10)
        assert outcome, "an upload to a killed registry must not succeed"
        registry.close()

        proc = start_service("registry", env, port=port)
        registry = RegistryClient(address)
        safe = registry.get_version("safe")
        assert safe.state == registry_pb2.VERSION_STATE_READY
        cache = VersionCache(registry, tmp_path / "pulled")
        local = cache.pull("safe:1").path
        assert (local / "w.bin").read_bytes() == (committed / "w.bin").read_bytes()
        victim = registry.get_version(f"victim:{pending.number}")
        assert victim.state == registry_pb2.VERSION_STATE_PENDING and victim.file_count == 0
        with pytest.raises(exceptions.NotFound):
            registry.get_version("victim")  # no READY version exists
        stat = registry.stat_upload(sha, big.stat().st_size)
        assert stat.presence == registry_pb2.BLOB_PRESENCE_PARTIAL
        assert stat.offset >= 8 * 1024 * 1024
        _, sent = upload_file(registry, "victim", 1, "big.bin", big)
        assert sent == big.stat().st_size - stat.offset
        done = registry.commit_version("victim", 1, expected_paths=["big.bin"])
        assert done.total_bytes == big.stat().st_size
        again = cache.pull("victim").path
        assert hashlib.sha256((again / "big.bin").read_bytes()).hexdigest() == sha
    finally:
        proc.kill()


def test_sigkill_around_commit_never_leaves_a_ready_version_without_its_bytes(tmp_path):
    env = {**os.environ, "FORGELINE_HOME": str(tmp_path / "home")}
    port = free_port()
    folder = tmp_path / "model"
    folder.mkdir()
    outcomes = []
    for attempt in range(6):
        (folder / "w.bin").write_bytes(os.urandom(1_000_000 + attempt))
        (folder / "config.json").write_text(f'{{"attempt": {attempt}}}')
        proc = start_service("registry", env, port=port)
        registry = RegistryClient(proc.address, ChannelOptions(retries=False))
        version = registry.create_version("m", registry_pb2.VERSION_KIND_BASE, create_model=True)
        for path in ("w.bin", "config.json"):
            upload_file(registry, "m", version.number, path, folder / path)
        committing = threading.Thread(
            target=_quietly,
            args=(registry.commit_version, "m", version.number, ["w.bin", "config.json"]),
        )
        committing.start()
        time.sleep(attempt * 0.002)  # kill at a different moment of the commit each time
        proc.kill()
        committing.join(10)
        registry.close()
        proc = start_service("registry", env, port=port)
        try:
            with RegistryClient(proc.address) as registry:
                after = registry.get_version(f"m:{version.number}")
                outcomes.append(after.state)
                assert after.state in (
                    registry_pb2.VERSION_STATE_PENDING,
                    registry_pb2.VERSION_STATE_READY,
                )
                if after.state == registry_pb2.VERSION_STATE_READY:
                    pulled = (
                        VersionCache(registry, tmp_path / "pulled").pull(f"m:{after.number}").path
                    )
                    for path in ("w.bin", "config.json"):
                        assert (pulled / path).read_bytes() == (folder / path).read_bytes()
        finally:
            proc.kill()
    assert len(outcomes) == 6


def _quietly(call, *args) -> None:
    """Runs a call whose process is about to be killed; its outcome is read back later."""
    with contextlib.suppress(Exception):
        call(*args)
