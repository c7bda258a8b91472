"""The registry store on SQLite and PostgreSQL: versions, sealing, aliases, gates, lineage, GC."""

from __future__ import annotations

import hashlib
import json

import pytest

from forgeline.client import exceptions
from forgeline.client.refs import parse_ref
from forgeline.registry.blobs import LocalBlobStore
from forgeline.registry.domain import Entry, Evaluation
from forgeline.registry.housekeeping import CollectionReport, StoreLimits
from forgeline.registry.store import RegistryStore
from forgeline.v1 import registry_pb2

BASE = registry_pb2.VERSION_KIND_BASE
ADAPTER = registry_pb2.VERSION_KIND_ADAPTER
DATASET = registry_pb2.VERSION_KIND_DATASET
READY = registry_pb2.VERSION_STATE_READY


@pytest.fixture
def store(db_url, tmp_path):
    store = RegistryStore(db_url, LocalBlobStore(tmp_path / "blobs"))
    yield store
    store.close()


def put_blob(store: RegistryStore, data: bytes) -> Entry:
    digest = hashlib.sha256(data).hexdigest()
    writer = store.blobs.writer(digest, len(data), 0)
    writer.write(data)
    writer.finish()
    return Entry("f", digest, len(data))


def ready(store: RegistryStore, model: str, kind: int = BASE, files: dict | None = None, **kw):
    v = store.create_version(model, kind, create_model=True, **kw)
    for path, data in (files or {"weights.bin": model.encode()}).items():
        e = put_blob(store, data)
        store.add_entry(model, v.number, Entry(path, e.sha256, e.size))
    return store.commit(model, v.number)


def test_versions_number_from_one_and_start_pending(store):
    store.create_model("m", "desc", ["llm", "llm", "small"])
    v1 = store.create_version("m", BASE)
    v2 = store.create_version("m", BASE)
    assert (v1.number, v2.number) == (1, 2)
    assert v1.state == registry_pb2.VERSION_STATE_PENDING
    model = store.get_model("m")
    assert model.tags == ["llm", "small"] and model.latest_version == 2


def test_create_version_validates_everything_at_once(store):
    with pytest.raises(exceptions.InvalidArgument) as info:
        store.create_version("Bad Name", 99, dataset_digest="xyz", spec_json="{nope")
    fields = {v.field for v in info.value.violations}
    assert fields == {"model", "kind", "lineage.dataset_digest", "lineage.spec_json"}


def test_unknown_model_without_create_is_not_found(store):
    with pytest.raises(exceptions.NotFound):
        store.create_version("nobody", BASE)


def test_commit_seals_with_counts_and_digest(store):
    v = ready(store, "m", files={"a.bin": b"aaa", "b/c.json": b"{}"}, metrics={"loss": 1.0})
    assert v.state == READY and v.file_count == 2 and v.total_bytes == 5
    assert len(v.manifest_digest) == 64
    version, entries = store.manifest(parse_ref("m:1"))
    assert [e.path for e in entries] == ["a.bin", "b/c.json"]
    assert version.metrics == {"loss": 1.0}


def test_commit_twice_and_commit_with_missing_paths_fail(store):
    v = store.create_version("m", BASE, create_model=True)
    e = put_blob(store, b"x")
    store.add_entry("m", v.number, Entry("a", e.sha256, e.size))
    with pytest.raises(exceptions.FailedPrecondition, match="lacks 1 expected file"):
        store.commit("m", v.number, expected_paths=["a", "b"])
    store.commit("m", v.number, expected_paths=["a"])
    with pytest.raises(exceptions.FailedPrecondition, match="not PENDING"):
        store.commit("m", v.number)
    with pytest.raises(exceptions.FailedPrecondition):
        store.add_entry("m", v.number, Entry("c", e.sha256, e.size))


def test_entries_need_stored_blobs_and_consistent_paths(store):
    v = store.create_version("m", BASE, create_model=True)
    with pytest.raises(exceptions.FailedPrecondition, match="not stored"):
        store.add_entry("m", v.number, Entry("a", "1" * 64, 3))
    e1, e2 = put_blob(store, b"one"), put_blob(store, b"two")
    with pytest.raises(exceptions.InvalidArgument) as info:
        store.add_entry("m", v.number, Entry("a", e1.sha256, 99))
    assert info.value.violations[0].field == "entry.size"
    store.add_entry("m", v.number, Entry("a", e1.sha256, e1.size))
    store.add_entry("m", v.number, Entry("a", e1.sha256, e1.size))  # idempotent
    with pytest.raises(exceptions.InvalidArgument, match="another digest"):
        store.add_entry("m", v.number, Entry("a", e2.sha256, e2.size))
    with pytest.raises(exceptions.InvalidArgument):
        store.add_entry("m", v.number, Entry("../a", e2.sha256, e2.size))


def test_references_resolve_latest_ready_number_and_alias(store):
    ready(store, "m")
    store.create_version("m", BASE)  # PENDING v2 is not "latest"
    assert store.get_version(parse_ref("m")).number == 1
    assert store.get_version(parse_ref("m:2")).state == registry_pb2.VERSION_STATE_PENDING
    store.set_alias("m", "prod", 1)
    assert store.get_version(parse_ref("m@prod")).aliases == ["prod"]
    for missing in ("m:3", "m@staging", "nope", "nope:1"):
        with pytest.raises(exceptions.NotFound):
            store.get_version(parse_ref(missing))


def test_only_ready_versions_can_be_parents_aliased_or_downloaded(store):
    store.create_version("m", BASE, create_model=True)
    with pytest.raises(exceptions.FailedPrecondition, match="PENDING"):
        store.set_alias("m", "prod", 1)
    with pytest.raises(exceptions.FailedPrecondition, match="PENDING"):
        store.create_version("a", ADAPTER, parents=[parse_ref("m:1")], create_model=True)
    with pytest.raises(exceptions.FailedPrecondition):
        store.manifest(parse_ref("m:1"))
    store.fail("m", 1, "job crashed")
    failed = store.get_version(parse_ref("m:1"))
    assert failed.failure_reason == "job crashed"
    with pytest.raises(exceptions.FailedPrecondition, match="FAILED"):
        store.set_alias("m", "prod", 1)


def test_alias_history_is_kept(store):
    ready(store, "m", files={"w": b"1"})
    ready(store, "m", files={"w": b"2"})
    assert store.set_alias("m", "prod", 1, actor="alice")[1] == 0
    assert store.set_alias("m", "prod", 2, actor="bob")[1] == 1
    assert store.delete_alias("m", "prod", actor="carol") == 2
    history = store.alias_history("m", "prod")
    assert [(e.version, e.previous_version, e.actor) for e in history] == [
        (1, 0, "alice"),
        (2, 1, "bob"),
        (0, 2, "carol"),
    ]


def test_evaluation_gate_compares_with_the_current_holder(store):
    for i in range(3):
        ready(store, "m", files={"w": bytes([i])})
    gate = registry_pb2.EvaluationGate(suite="mmlu", metric="accuracy", tolerance=0.01)
    with pytest.raises(exceptions.FailedPrecondition, match="no mmlu report"):
        store.set_alias("m", "prod", 1, gate=gate)
    for number, acc in ((1, 0.40), (2, 0.395), (3, 0.30)):
        store.add_evaluation(
            parse_ref(f"m:{number}"), Evaluation("mmlu", {"accuracy": acc}, {}, "job-1", 100)
        )
    store.set_alias("m", "prod", 1, gate=gate)
    store.set_alias("m", "prod", 2, gate=gate)  # 0.395 >= 0.40 - 0.01
    with pytest.raises(exceptions.FailedPrecondition) as info:
        store.set_alias("m", "prod", 3, gate=gate)
    assert "0.3000" in info.value.message and "0.3950" in info.value.message
    assert info.value.type == "GATE_REGRESSION"
    floor = registry_pb2.EvaluationGate(suite="mmlu", metric="accuracy", minimum=0.5)
    with pytest.raises(exceptions.FailedPrecondition, match="below the minimum"):
        store.set_alias("m", "staging", 1, gate=floor)
    assert store.get_version(parse_ref("m@prod")).number == 2


def test_incomplete_gate_is_invalid(store):
    ready(store, "m")
    with pytest.raises(exceptions.InvalidArgument) as info:
        store.set_alias("m", "prod", 1, gate=registry_pb2.EvaluationGate(suite="mmlu"))
    assert info.value.violations[0].field == "gate.metric"


def test_lineage_walks_both_ways(store):
    data = ready(store, "law-qa", DATASET, files={"d.jsonl": b"{}"})
    base = ready(store, "base")
    adapter = ready(
        store,
        "law",
        ADAPTER,
        parents=[parse_ref("base:1"), parse_ref("law-qa:1")],
        job_id="job-1",
        dataset_digest="a" * 64,
        spec_json=json.dumps({"rank": 8}),
    )
    merged = ready(
        store, "law-merged", registry_pb2.VERSION_KIND_MERGED, parents=[parse_ref("law:1")]
    )
    root, up, edges = store.lineage(
        parse_ref("law-merged:1"), registry_pb2.LINEAGE_DIRECTION_ANCESTORS
    )
    assert root.key == merged.key
    assert {v.key for v in up} == {adapter.key, base.key, data.key}
    assert ("law:1", "law-merged:1") in edges and ("base:1", "law:1") in edges
    _, down, _ = store.lineage(parse_ref("base:1"), registry_pb2.LINEAGE_DIRECTION_DESCENDANTS)
    assert [v.key for v in down] == ["law:1", "law-merged:1"]
    _, near, _ = store.lineage(parse_ref("base:1"), 0, max_depth=1)
    assert [v.key for v in near] == ["law:1"]
    got = store.get_version(parse_ref("law:1"))
    assert got.parents == [("base", 1), ("law-qa", 1)] and got.job_id == "job-1"


def test_list_versions_filters_and_pages(store):
    store.create_model("tagged", tags=["prod-line"])
    ready(store, "tagged")
    ready(store, "other", ADAPTER, job_id="job-9")
    store.create_version("other", ADAPTER)
    store.set_alias("tagged", "prod", 1)
    keys = lambda versions: [v.key for v in versions]  # noqa: E731
    assert keys(store.list_versions(kinds=[ADAPTER])[0]) == ["other:2", "other:1"]
    assert keys(store.list_versions(states=[READY])[0]) == ["other:1", "tagged:1"]
    assert keys(store.list_versions(tag="prod-line")[0]) == ["tagged:1"]
    assert keys(store.list_versions(alias="prod")[0]) == ["tagged:1"]
    assert keys(store.list_versions(job_id="job-9")[0]) == ["other:1"]
    page, token = store.list_versions(page_size=2)
    rest, end = store.list_versions(page_size=2, page_token=token)
    assert keys(page + rest) == ["other:2", "other:1", "tagged:1"] and end == ""
    models, _ = store.list_models(name_prefix="ta")
    assert [m.name for m in models] == ["tagged"]
    assert store.list_models()[1] == ""


def test_archive_and_garbage_collection(db_url, tmp_path):
    store = RegistryStore(db_url, LocalBlobStore(tmp_path / "b"), StoreLimits(gc_grace_seconds=0))
    shared = b"shared weights"
    ready(store, "m", files={"w": shared, "only1": b"one"})
    ready(store, "m", files={"w": shared})
    store.set_alias("m", "prod", 1)
    with pytest.raises(exceptions.FailedPrecondition, match="move them first"):
        store.archive(parse_ref("m:1"))
    store.set_alias("m", "prod", 2)
    assert store.archive(parse_ref("m:1")).state == registry_pb2.VERSION_STATE_ARCHIVED
    assert store.garbage_collect(dry_run=True) == CollectionReport(1, 3)
    assert len(list(store.blobs.digests())) == 2
    assert store.garbage_collect() == CollectionReport(1, 3)
    assert len(list(store.blobs.digests())) == 1  # the blob v2 still uses stays
    assert store.garbage_collect() == CollectionReport(0, 0)
    with pytest.raises(exceptions.FailedPrecondition):
        store.archive(parse_ref("m:1"))
    store.close()


def test_duplicate_model_name(store):
    store.create_model("m")
    with pytest.raises(exceptions.AlreadyExists):
        store.create_model("m")


def test_evaluations_keep_their_per_subject_item_counts(store):
    ready(store, "m")
    stored = Evaluation("mmlu", {"accuracy": 0.5}, {"a": 0.5}, "job-1", 4, subject_samples={"a": 4})
    store.add_evaluation(parse_ref("m:1"), stored)
    (back,) = store.list_evaluations(parse_ref("m:1"))
    assert (back.subjects, back.subject_samples, back.num_samples) == ({"a": 0.5}, {"a": 4}, 4)
