"""The version cache: pulled once per machine, verified, read-only, and never led astray."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.cache import COMPLETE_MARKER, VersionCache
from forgeline.client.channel import ChannelOptions
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_folder
from forgeline.common.server import Service, build_server
from forgeline.registry.service import RegistryServicer, create_server
from forgeline.v1 import registry_pb2, registry_pb2_grpc
from tests.conftest import serving

pytestmark = pytest.mark.integration

BASE = registry_pb2.VERSION_KIND_BASE
WEIGHTS = 8 * 1024 * 1024 + 5


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """Bytes the registry streams out, chunk by chunk (each chunk slowed down a little, so
    that pulls started together really overlap)."""
    chunks: list[int] = []
    original = RegistryServicer.DownloadArtifact

    async def counted(self, request, context):
        async for message in original(self, request, context):
            chunks.append(len(message.chunk))
            await asyncio.sleep(0.03)
            yield message

    monkeypatch.setattr(RegistryServicer, "DownloadArtifact", counted)
    return chunks


@pytest.fixture
def registry(settings_for, sent):
    with serving(lambda: create_server(settings_for("registry"))[0]) as server:
        yield server


@pytest.fixture
def pushed(registry, tmp_path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(os.urandom(WEIGHTS))
    (folder / "sub" / "config.json").write_text('{"a": 1}')
    with RegistryClient(registry.address) as client:
        push_folder(client, folder, "m", BASE)
    return folder


@pytest.fixture
def shared_root():
    """A cache root other users could traverse (to try writing as one)."""
    root = Path(tempfile.mkdtemp(prefix="forgeline-cache-"))
    root.chmod(0o755)
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


PULL = """
import hashlib, sys
from pathlib import Path
from forgeline.client.cache import VersionCache
from forgeline.client.registry import RegistryClient

with RegistryClient(sys.argv[1]) as client:
    path = VersionCache(client, Path(sys.argv[2])).pull("m:1").path
print(path, hashlib.sha256((path / "weights.bin").read_bytes()).hexdigest())
"""


def test_two_processes_pulling_at_once_move_the_bytes_once(registry, pushed, sent, tmp_path):
    root = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PULL, registry.address, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    expected = hashlib.sha256((pushed / "weights.bin").read_bytes()).hexdigest()
    folder = root / "m" / "1"
    assert [out.split() for out, _ in outputs] == [[str(folder), expected]] * 2
    assert (folder / "sub" / "config.json").read_text() == '{"a": 1}'
    total = WEIGHTS + len('{"a": 1}')
    assert sum(sent) == total  # one download between them, not two
    assert sorted(p.name for p in (root / "m").iterdir() if p.is_dir()) == ["1"]


def test_pulled_files_are_read_only(registry, pushed, shared_root):
    with RegistryClient(registry.address) as client:
        folder = VersionCache(client, shared_root).pull("m").path
    for path in (folder / "weights.bin", folder / "sub" / "config.json", folder / COMPLETE_MARKER):
        assert path.stat().st_mode & 0o222 == 0, path
    probe = "open(__import__('sys').argv[1], 'r+b')"
    if os.geteuid() == 0:  # root ignores permission bits: try as an ordinary user
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import os; os.setuid(65534); {probe}",
                str(folder / "weights.bin"),
            ],
            capture_output=True,
            text=True,
        )
    else:
        result = subprocess.run(
            [sys.executable, "-c", probe, str(folder / "weights.bin")],
            capture_output=True,
            text=True,
        )
    assert result.returncode != 0 and "PermissionError" in result.stderr


def test_blobs_of_a_local_registry_are_linked_and_stay_intact(registry, pushed, home, sent):
    server_store = registry.server.components["store"].blobs
    with RegistryClient(registry.address) as client:
        folder = VersionCache(client, home.parent / "cache", local_roots=[home]).pull("m").path
    weights = folder / "weights.bin"
    assert weights.stat().st_nlink == 2  # the store's own file: no copy, no download
    assert sent == []
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert weights.stat().st_ino == server_store.local_path(digest).stat().st_ino
    assert weights.stat().st_mode & 0o222 == 0


def test_a_resumed_download_fetches_only_what_is_missing(registry, pushed, sent, tmp_path):
    root = tmp_path / "cache"
    data = (pushed / "weights.bin").read_bytes()
    staging = root / "m" / ".forgeline-1.partial"
    staging.mkdir(parents=True)
    (staging / ".forgeline-weights.bin.part").write_bytes(data[:3_000_000])
    with RegistryClient(registry.address) as client:
        folder = VersionCache(client, root).pull("m:1").path
    assert (folder / "weights.bin").read_bytes() == data
    assert sum(sent) == len(data) - 3_000_000 + len('{"a": 1}')
    assert not staging.exists()


class HostileRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """Answers GetManifest with whatever the test says, and serves `content` for any file."""

    def __init__(self, entries, content: bytes, local_paths=None):
        self.entries = entries
        self.content = content
        self.local_paths = local_paths or {}

    async def GetManifest(self, request, context):
        version = registry_pb2.Version(
            model="m", number=1, state=registry_pb2.VERSION_STATE_READY, manifest_digest="d"
        )
        return registry_pb2.GetManifestResponse(
            version=version, entries=self.entries, local_paths=self.local_paths
        )

    async def DownloadArtifact(self, request, context):
        yield registry_pb2.DownloadArtifactResponse(offset=0, chunk=self.content)


@contextlib.contextmanager
def hostile(settings_for, servicer) -> Iterator[RegistryClient]:
    """A client of a registry that answers with `servicer`."""
    name = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
    service = Service(
        name, lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, s)
    )
    with (
        serving(lambda: build_server(settings_for("registry"), [service])) as server,
        RegistryClient(server.address, ChannelOptions(retries=False)) as client,
    ):
        yield client


def entry(path: str, content: bytes) -> registry_pb2.ManifestEntry:
    return registry_pb2.ManifestEntry(
        path=path, sha256=hashlib.sha256(content).hexdigest(), size=len(content)
    )


@pytest.mark.parametrize("path", ["../evil", "a/../../evil", "/tmp/evil", ".forgeline-complete"])
def test_a_manifest_path_from_a_hostile_registry_is_refused(settings_for, tmp_path, path):
    servicer = HostileRegistry([entry(path, b"pwned")], b"pwned")
    root = tmp_path / "cache"
    with (
        hostile(settings_for, servicer) as client,
        pytest.raises(exceptions.InvalidArgument) as info,
    ):
        VersionCache(client, root).pull("m")
    assert info.value.violations[0].field == "entries[0].path"
    assert not root.exists()  # refused before anything was written
    assert not (tmp_path / "evil").exists()


def test_content_that_does_not_match_its_digest_is_never_published(settings_for, tmp_path):
    servicer = HostileRegistry([entry("w.bin", b"expected")], b"tampered")
    with (
        hostile(settings_for, servicer) as client,
        pytest.raises(OSError, match="does not match its digest"),
    ):
        VersionCache(client, tmp_path / "cache").pull("m")
    assert not (tmp_path / "cache" / "m" / "1").exists()


def test_a_local_path_outside_the_trusted_folders_is_not_linked(settings_for, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"private!")
    content = b"public!!"  # same size as the secret
    servicer = HostileRegistry(
        [entry("w.bin", content)], content, local_paths={"w.bin": str(secret)}
    )
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    with hostile(settings_for, servicer) as client:
        folder = VersionCache(client, tmp_path / "cache", local_roots=[trusted]).pull("m").path
    assert (folder / "w.bin").read_bytes() == content
    assert (folder / "w.bin").stat().st_ino != secret.stat().st_ino
