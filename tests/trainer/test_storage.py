"""The training storage setting: each job's place in it, reading results back, discarding."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline.trainer.storage import TrainStorage


def checkpoint(folder: Path) -> Path:
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "trainer_state.json").write_text("{}")
    return folder


def test_each_job_gets_its_own_folder(tmp_path):
    work = tmp_path / "jobs" / "job-1"
    assert TrainStorage().location("job-1", work) == str(work / "ray")
    assert TrainStorage("/mnt/shared/train").location("job-1", work) == "/mnt/shared/train/job-1"
    assert TrainStorage("s3://bucket/prefix/").location("job-1", work) == "s3://bucket/prefix/job-1"
    assert TrainStorage("gs://bucket").location("job-1", work) == "gs://bucket/job-1"
    assert TrainStorage("file:///srv/x").location("job-1", work) == "file:///srv/x/job-1"
    # Options of the filesystem stay options, after the job's folder.
    assert (
        TrainStorage("s3://bucket/p?region=eu-west-1").location("job-1", work)
        == "s3://bucket/p/job-1?region=eu-west-1"
    )


def test_a_relative_path_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match=r"FORGELINE_TRAIN_STORAGE.*absolute"):
        TrainStorage("checkpoints")


def test_a_path_is_read_in_place(tmp_path):
    storage = TrainStorage(str(tmp_path / "shared"))
    location = storage.location("job-1", tmp_path / "job")
    storage.prepare(location)
    assert Path(location).is_dir()
    result = checkpoint(Path(location) / "run" / "checkpoint_000002")
    assert storage.fetch(location, str(result), tmp_path / "job") == result


def test_a_uri_result_is_downloaded_into_the_jobs_folder(tmp_path):
    storage = TrainStorage(f"file://{tmp_path / 'bucket'}")
    location = storage.location("job-1", tmp_path / "job")
    storage.prepare(location)  # nothing to do: Ray Train creates it
    assert not (tmp_path / "bucket").exists()
    remote = checkpoint(tmp_path / "bucket" / "job-1" / "run" / "checkpoint_000002")
    (tmp_path / "job" / "checkpoint").mkdir(parents=True)
    (tmp_path / "job" / "checkpoint" / "stale").write_text("from an earlier attempt")
    local = storage.fetch(location, str(remote), tmp_path / "job")
    assert local == tmp_path / "job" / "checkpoint"
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*")) == [
        "model",
        "model/adapter_model.safetensors",
        "trainer_state.json",
    ]
    assert (local / "model" / "adapter_model.safetensors").read_bytes() == b"weights"


def test_a_missing_uri_result_raises_an_oserror(tmp_path):
    storage = TrainStorage(f"file://{tmp_path / 'bucket'}")
    location = storage.location("job-1", tmp_path / "job")
    with pytest.raises(OSError):
        storage.fetch(location, str(tmp_path / "bucket" / "job-1" / "nothing"), tmp_path / "job")


@pytest.mark.parametrize("uri", [False, True])
def test_discard_removes_the_jobs_folder_only(tmp_path, uri):
    root = tmp_path / "shared"
    storage = TrainStorage(f"file://{root}" if uri else str(root))
    location = storage.location("job-1", tmp_path / "job")
    checkpoint(root / "job-1" / "run" / "checkpoint_000001")
    checkpoint(root / "job-2" / "run" / "checkpoint_000001")
    storage.discard(location)
    storage.discard(location)  # already gone: fine
    assert sorted(p.name for p in root.iterdir()) == ["job-2"]


def test_discard_leaves_the_default_alone(tmp_path):
    storage = TrainStorage()
    location = storage.location("job-1", tmp_path / "job")
    checkpoint(Path(location))
    storage.discard(location)  # the job's folder goes with the job, not here
    assert Path(location).exists()
