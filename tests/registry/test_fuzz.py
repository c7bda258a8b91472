"""Property tests: whatever a client sends the registry, it answers with a domain error that
names the field, never INTERNAL, and never lets a file reach a version it should not.

Each property runs against one real in-process registry over a real channel.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions
from forgeline.client.manifests import check_path
from forgeline.client.registry import RegistryClient
from forgeline.common.settings import Settings
from forgeline.registry.service import create_server
from forgeline.v1 import common_pb2, registry_pb2
from tests.conftest import ServerThread
from tests.registry.conftest import POSTGRES_URL, _postgres_database

pytestmark = pytest.mark.integration

EXAMPLES = 300
TRIED: Counter[str] = Counter()

texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["", ".", "..", "../x", "a/../../b", "/abs", "a//b", "a\\b", "x" * 2000]),
    st.sampled_from([".forgeline-complete", "é", "e\u0301", "a\x00b", "ok", "ok/f.bin"]),
)
numbers = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1]))
sizes = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))
digests = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=70),
    st.just(hashlib.sha256(b"stored").hexdigest()),
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request, tmp_path_factory):
    """A metadata database for the whole module, on SQLite and (when reachable) PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'registry.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("FORGELINE_TEST_POSTGRES_URL is not set")
    yield from _postgres_database()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, database):
    home = tmp_path_factory.mktemp("home")
    settings_ = Settings.load("registry", host="127.0.0.1", port=0, home=home, db_url=database)
    server = ServerThread(lambda: create_server(settings_)[0]).start()
    client = RegistryClient(server.address, ChannelOptions(retries=False))
    stored = client.create_version("fuzz", registry_pb2.VERSION_KIND_BASE, create_model=True)
    header = registry_pb2.UploadHeader(
        model="fuzz",
        version=stored.number,
        path="stored.bin",
        size=6,
        sha256=hashlib.sha256(b"stored").hexdigest(),
    )
    client.upload_artifact(header, [b"stored"])
    client.commit_version("fuzz", stored.number)
    yield client
    client.close()
    server.stop()
    print(f"\nregistry fuzz: {dict(TRIED)} calls, {sum(TRIED.values())} in all")


def refused_cleanly(call) -> None:
    """Runs `call`; a refusal must be a domain error that says which field, never INTERNAL."""
    try:
        call()
    except exceptions.InvalidArgument as exc:
        assert exc.violations and all(v.field for v in exc.violations), exc
    except (
        exceptions.NotFound,
        exceptions.FailedPrecondition,
        exceptions.AlreadyExists,
        exceptions.ResourceExhausted,
    ):
        pass
    except exceptions.Internal as exc:  # pragma: no cover - the failure this test hunts
        pytest.fail(f"INTERNAL: {exc}")


fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@fuzz
@given(name=texts, version=numbers, alias=texts, use_alias=st.booleans())
def test_references(registry, name, version, alias, use_alias):
    TRIED["references"] += 1
    ref = common_pb2.ModelRef(name=name)
    if use_alias:
        ref.alias = alias
    elif version:
        ref.version = version
    for call in (registry.get_version, registry.get_manifest, registry.list_evaluations):
        refused_cleanly(lambda call=call: call(ref))
    refused_cleanly(lambda: list(registry.download_artifact(ref, name, 0)))


@fuzz
@given(path=texts, size=sizes, sha=digests, offset=sizes)
def test_uploads_and_links(registry, path, size, sha, offset):
    TRIED["manifests"] += 1
    v = registry.create_version("fuzz", registry_pb2.VERSION_KIND_BASE)
    header = registry_pb2.UploadHeader(
        model="fuzz", version=v.number, path=path, size=size, sha256=sha, offset=offset
    )
    entry = registry_pb2.ManifestEntry(path=path, sha256=sha, size=size)
    refused_cleanly(lambda: registry.upload_artifact(header, [os.urandom(8)]))
    refused_cleanly(lambda: registry.link_artifact("fuzz", v.number, entry))
    refused_cleanly(lambda: registry.commit_version("fuzz", v.number, [path]))
    manifest = registry.get_manifest(f"fuzz:{v.number}") if _ready(registry, v.number) else None
    for e in manifest.entries if manifest else ():
        check_path(e.path)  # whatever was accepted is a safe path


@fuzz
@given(model=texts, kind=st.integers(-5, 10), parents=st.lists(texts, max_size=3), spec=texts)
def test_new_versions(registry, model, kind, parents, spec):
    TRIED["versions"] += 1
    refs = [common_pb2.ModelRef(name=p) for p in parents]
    lineage = registry_pb2.Lineage(spec_json=spec, dataset_digest=spec[:64])
    refused_cleanly(
        lambda: registry.create_version(
            model, kind, parents=refs, lineage=lineage, create_model=True
        )
    )


@fuzz
@given(
    alias=texts,
    number=numbers,
    suite=texts,
    metrics=st.dictionaries(texts, st.floats(allow_nan=True), max_size=3),
    tolerance=st.floats(allow_nan=True),
)
def test_aliases_and_evaluations(registry, alias, number, suite, metrics, tolerance):
    TRIED["releases"] += 1
    gate = registry_pb2.EvaluationGate(suite=suite, metric="accuracy", tolerance=tolerance)
    evaluation = registry_pb2.Evaluation(suite=suite, metrics=metrics)
    refused_cleanly(lambda: registry.set_alias("fuzz", alias, number, gate=gate))
    refused_cleanly(lambda: registry.add_evaluation(f"fuzz:{max(number, 1)}", evaluation))
    refused_cleanly(lambda: registry.alias_history("fuzz", alias))


def _ready(registry: RegistryClient, number: int) -> bool:
    return (
        registry.get_version(common_pb2.ModelRef(name="fuzz", version=number)).state
        == registry_pb2.VERSION_STATE_READY
    )
