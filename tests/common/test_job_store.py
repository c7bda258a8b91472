"""Unit tests of the SQL job store: lifecycle rules, event numbering, pagination."""

from __future__ import annotations

import pytest

from forgeline.client import exceptions
from forgeline.common.jobs import JobStore
from forgeline.v1 import common_pb2

TRAIN = common_pb2.JOB_KIND_TRAIN


def state(s: int, reason: str = "") -> common_pb2.JobEvent:
    return common_pb2.JobEvent(state=common_pb2.JobStateChange(state=s, reason=reason))


@pytest.fixture
def store(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield store
    store.close()


def test_create_persists_a_queued_job_with_its_first_event(store):
    job = store.create(TRAIN, b"spec-bytes", {"team": "law"})
    assert job.state == common_pb2.JOB_STATE_QUEUED
    assert job.last_event_seq == 1
    assert store.get_spec(job.id) == b"spec-bytes"
    [event] = store.events_after(job.id, 0)
    assert event.seq == 1
    assert event.message.state.state == common_pb2.JOB_STATE_QUEUED
    assert event.message.job_id == job.id


def test_events_are_numbered_without_gaps_and_update_the_job(store):
    job = store.create(TRAIN, b"")
    store.append(job.id, state(common_pb2.JOB_STATE_RUNNING))
    store.append(job.id, common_pb2.JobEvent(progress=common_pb2.JobProgress(fraction=0.5)))
    store.append(job.id, common_pb2.JobEvent(metrics=common_pb2.JobMetrics(values={"loss": 1.5})))
    store.append(job.id, common_pb2.JobEvent(metrics=common_pb2.JobMetrics(values={"lr": 1e-4})))
    store.append(job.id, state(common_pb2.JOB_STATE_SUCCEEDED), outputs=["m:1"])
    got = store.get(job.id)
    assert [e.seq for e in store.events_after(job.id, 0)] == [1, 2, 3, 4, 5, 6]
    assert [e.seq for e in store.events_after(job.id, 4)] == [5, 6]
    assert got.state == common_pb2.JOB_STATE_SUCCEEDED
    assert got.progress == 1.0
    assert got.metrics == {"loss": 1.5, "lr": 1e-4}
    assert got.outputs == ["m:1"]
    assert got.attempt == 1
    assert got.start_time is not None and got.end_time >= got.start_time


@pytest.mark.parametrize(
    "terminal",
    [common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED],
)
def test_terminal_states_are_final(store, terminal):
    job = store.create(TRAIN, b"")
    store.append(job.id, state(common_pb2.JOB_STATE_RUNNING))
    store.append(job.id, state(terminal, "why"))
    with pytest.raises(exceptions.FailedPrecondition) as info:
        store.append(job.id, state(common_pb2.JOB_STATE_RUNNING))
    assert "cannot become JOB_STATE_RUNNING" in info.value.message
    assert store.get(job.id).last_event_seq == 3  # the refused event was not written


def test_queued_cannot_jump_to_succeeded(store):
    job = store.create(TRAIN, b"")
    with pytest.raises(exceptions.FailedPrecondition):
        store.append(job.id, state(common_pb2.JOB_STATE_SUCCEEDED))


def test_unknown_job_is_not_found(store):
    with pytest.raises(exceptions.NotFound):
        store.get("job-nope")
    with pytest.raises(exceptions.NotFound):
        store.append("job-nope", state(common_pb2.JOB_STATE_RUNNING))


def test_list_pages_newest_first_with_filters(store):
    ids = [store.create(TRAIN, b"", {"i": str(i % 2)}).id for i in range(7)]
    store.create(common_pb2.JOB_KIND_EVALUATE, b"")
    store.append(ids[0], state(common_pb2.JOB_STATE_CANCELLED))
    seen, token = [], ""
    while True:
        page, token = store.list(TRAIN, page_size=3, page_token=token)
        seen += [j.id for j in page]
        if not token:
            break
    assert seen == ids[::-1]
    odd, _ = store.list(TRAIN, labels={"i": "1"})
    assert [j.id for j in odd] == [ids[5], ids[3], ids[1]]
    cancelled, _ = store.list(TRAIN, states=[common_pb2.JOB_STATE_CANCELLED])
    assert [j.id for j in cancelled] == [ids[0]]


def test_bad_page_token_names_the_field(store):
    with pytest.raises(exceptions.InvalidArgument) as info:
        store.list(TRAIN, page_token="garbage!")
    assert info.value.violations[0].field == "page.page_token"


def test_jobs_survive_reopening_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = JobStore(url)
    job = first.create(TRAIN, b"abc", {"k": "v"})
    first.append(job.id, state(common_pb2.JOB_STATE_RUNNING))
    first.close()
    second = JobStore(url)
    again = second.get(job.id)
    assert again.state == common_pb2.JOB_STATE_RUNNING
    assert again.labels == {"k": "v"}
    assert [e.seq for e in second.events_after(job.id, 0)] == [1, 2]
    second.close()
