"""The registry over gRPC: transfers, dedupe, resume, bad input, and the whole version life."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.channel import ChannelOptions
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder, upload_file
from forgeline.registry.service import create_server
from forgeline.v1 import common_pb2, registry_pb2
from tests.conftest import serving

pytestmark = pytest.mark.integration

BASE = registry_pb2.VERSION_KIND_BASE


@pytest.fixture
def server(settings_for, db_url):
    with serving(lambda: create_server(settings_for("registry", db_url=db_url))[0]) as running:
        yield running


@pytest.fixture
def registry(server):
    with RegistryClient(server.address, ChannelOptions(retries=False)) as client:
        yield client


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "config.json").write_text('{"hidden": 8}')
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (root / "empty.txt").write_bytes(b"")
    return root


def pending(registry: RegistryClient, model: str = "m") -> registry_pb2.Version:
    return registry.create_version(model, BASE, create_model=True)


def test_push_then_pull_round_trips_every_byte(registry, folder, tmp_path):
    version = push_folder(
        registry, folder, "m", BASE, metadata={"arch": "llama"}, description="test"
    )
    assert version.state == registry_pb2.VERSION_STATE_READY
    assert version.file_count == 4 and version.metadata["arch"] == "llama"
    cache = VersionCache(registry, tmp_path / "cache")
    local = cache.pull("m").path
    for path in folder.rglob("*"):
        if path.is_file():
            assert (local / path.relative_to(folder)).read_bytes() == path.read_bytes()
    mtime = (local / "weights.bin").stat().st_mtime_ns
    assert cache.pull("m:1").path == local  # complete: no work
    assert (local / "weights.bin").stat().st_mtime_ns == mtime


def test_reupload_of_known_content_moves_no_bytes(registry, folder):
    push_folder(registry, folder, "m", BASE)
    v2 = pending(registry)
    _, sent = upload_file(registry, "m", v2.number, "weights.bin", folder / "weights.bin")
    assert sent == 0
    again = push_folder(registry, folder, "m", BASE, reuse_identical=True)
    assert again.number == 1  # identical content: the existing version is returned


def _upload(registry, header, chunks):
    return registry.upload_artifact(header, iter(chunks))


@pytest.mark.parametrize(
    ("path", "problem"),
    [("../escape", "'..'"), ("/etc/passwd", "relative"), ("a/../../b", "'..'"), ("", "empty")],
)
def test_path_traversal_is_refused_before_any_byte_moves(registry, path, problem):
    v = pending(registry)
    header = registry_pb2.UploadHeader(
        model="m", version=v.number, path=path, size=1, sha256=hashlib.sha256(b"x").hexdigest()
    )
    with pytest.raises(exceptions.InvalidArgument) as info:
        _upload(registry, header, [b"x"])
    assert info.value.violations[0].field == "header.path"
    assert problem in info.value.violations[0].description


def test_digest_and_size_mismatches_name_the_field(registry):
    v = pending(registry)
    good = hashlib.sha256(b"hello").hexdigest()
    cases = [
        (registry_pb2.UploadHeader(size=5, sha256="0" * 64), [b"hello"], "header.sha256"),
        (registry_pb2.UploadHeader(size=4, sha256=good), [b"hello"], "header.size"),
        (registry_pb2.UploadHeader(size=9, sha256=good), [b"hello"], "header.size"),
        (registry_pb2.UploadHeader(size=5, sha256="NOT-HEX"), [b"hello"], "header.sha256"),
    ]
    for header, chunks, field in cases:
        header.model, header.version, header.path = "m", v.number, "f.bin"
        with pytest.raises(exceptions.InvalidArgument) as info:
            _upload(registry, header, chunks)
        assert info.value.violations[0].field == field
    manifest_less = registry.commit_version("m", v.number)
    assert manifest_less.file_count == 0  # nothing half-written became an entry


def test_references_and_states_map_to_the_right_errors(registry, folder):
    push_folder(registry, folder, "m", BASE)
    for missing in ("m:7", "m@prod", "ghost"):
        with pytest.raises(exceptions.NotFound):
            registry.get_version(missing)
    with pytest.raises(exceptions.InvalidArgument) as info:
        registry.get_version(common_pb2.ModelRef(name="Bad/Name"))
    assert info.value.violations[0].field == "ref.name"
    with pytest.raises(exceptions.InvalidArgument) as info:
        registry.get_version(common_pb2.ModelRef(name="m", version=0))
    assert info.value.violations[0].field == "ref.version"
    with pytest.raises(exceptions.FailedPrecondition, match="not PENDING"):
        registry.commit_version("m", 1)
    v2 = pending(registry)
    with pytest.raises(exceptions.FailedPrecondition, match="PENDING"):
        registry.set_alias("m", "prod", v2.number)
    with pytest.raises(exceptions.FailedPrecondition):
        list(registry.download_artifact("m:2", "config.json"))
    with pytest.raises(exceptions.NotFound):
        list(registry.download_artifact("m:1", "nope"))


def test_promote_with_gate_and_history_over_grpc(registry, folder):
    push_folder(registry, folder, "m", BASE)
    (folder / "config.json").write_text('{"hidden": 16}')
    push_folder(registry, folder, "m", BASE)
    for number, acc in ((1, 0.5), (2, 0.4)):
        registry.add_evaluation(
            f"m:{number}", registry_pb2.Evaluation(suite="mmlu", metrics={"accuracy": acc})
        )
    gate = registry_pb2.EvaluationGate(suite="mmlu", metric="accuracy")
    registry.set_alias("m", "prod", 1, gate=gate)
    with pytest.raises(exceptions.FailedPrecondition) as info:
        registry.set_alias("m", "prod", 2, gate=gate)
    assert "0.4000" in info.value.message and "0.5000" in info.value.message
    assert registry.get_version("m@prod").number == 1
    with pytest.raises(exceptions.InvalidArgument) as bad:
        registry.add_evaluation("m:1", registry_pb2.Evaluation())
    assert {v.field for v in bad.value.violations} == {"evaluation.suite", "evaluation.metrics"}


def test_client_killed_mid_upload_leaves_nothing_visible_and_resumes(registry, server, folder):
    v = pending(registry)
    data = (folder / "weights.bin").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    gate = threading.Event()
    outcome: list[BaseException] = []

    def chunks():
        yield data[:1_000_000]
        gate.wait(30)  # the client "dies" here

    def upload(client: RegistryClient) -> None:
        header = registry_pb2.UploadHeader(
            model="m", version=v.number, path="weights.bin", size=len(data), sha256=sha
        )
        try:
            client.upload_artifact(header, chunks())
        except BaseException as exc:
            outcome.append(exc)

    dying = RegistryClient(server.address, ChannelOptions(retries=False))
    uploader = threading.Thread(target=upload, args=(dying,))
    uploader.start()
    partial = server.server.components["store"].blobs.partial_path(sha)
    deadline = time.monotonic() + 20
    while not (partial.exists() and partial.stat().st_size == 1_000_000):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # While that upload holds the partial file, nobody is told to resume from it.
    assert registry.stat_upload(sha, len(data)).presence == registry_pb2.BLOB_PRESENCE_ABSENT
    dying.close()  # the connection goes with the client
    gate.set()
    uploader.join(30)
    assert outcome, "the upload of a closed client must not succeed"
    stat = registry.stat_upload(sha, len(data))
    assert (stat.presence, stat.offset) == (registry_pb2.BLOB_PRESENCE_PARTIAL, 1_000_000)
    with pytest.raises(exceptions.FailedPrecondition, match="lacks 1 expected"):
        registry.commit_version("m", v.number, expected_paths=["weights.bin"])
    _, sent = upload_file(registry, "m", v.number, "weights.bin", folder / "weights.bin")
    assert sent == len(data) - 1_000_000
    done = registry.commit_version("m", v.number, expected_paths=["weights.bin"])
    assert done.state == registry_pb2.VERSION_STATE_READY


def test_concurrent_uploads_of_one_blob_store_it_once(registry, server, folder):
    versions = [pending(registry, "a"), pending(registry, "b")]
    results, failures = [], []

    def upload(model, number):
        try:
            with RegistryClient(server.address) as own:
                results.append(upload_file(own, model, number, "w", folder / "weights.bin"))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=upload, args=(v.model, v.number)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures and len(results) == 2
    assert list(server.server.components["store"].blobs.digests()) == [results[0][0].sha256]
    for v in versions:
        done = registry.commit_version(v.model, v.number, expected_paths=["w"])
        assert done.state == registry_pb2.VERSION_STATE_READY


def test_failed_push_marks_the_version_failed(registry, folder, monkeypatch):
    import forgeline.client.transfer as transfer

    def broken(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(transfer, "upload_file", broken)
    with pytest.raises(OSError):
        push_file(registry, folder / "config.json", "m", BASE)
    version = registry.get_version(common_pb2.ModelRef(name="m", version=1))
    assert version.state == registry_pb2.VERSION_STATE_FAILED
    assert "disk went away" in version.failure_reason


def test_lineage_and_listing_over_grpc(registry, folder):
    push_folder(registry, folder, "base", BASE)
    push_file(
        registry,
        folder / "config.json",
        "adapter",
        registry_pb2.VERSION_KIND_ADAPTER,
        parents=["base:1"],
        lineage=registry_pb2.Lineage(job_id="job-1"),
    )
    lineage = registry.get_lineage("adapter:1")
    assert [f"{v.model}:{v.number}" for v in lineage.versions] == ["base:1"]
    assert lineage.edges[0].parent.name == "base" and lineage.edges[0].child.name == "adapter"
    adapters = list(registry.list_versions(kinds=[registry_pb2.VERSION_KIND_ADAPTER]))
    assert [v.lineage.job_id for v in adapters] == ["job-1"]
    assert adapters[0].parents[0].version == 1
