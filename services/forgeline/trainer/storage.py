"""Where Ray Train keeps a job's checkpoints, and how the service reads the result back.

Every worker persists its part of each checkpoint into the run's storage, and the service
reads the final one to register it, so on a cluster of several machines that storage must
be reachable from all of them (`FORGELINE_TRAIN_STORAGE`):

- empty: the job's own folder on the service's machine, enough for a local Ray;
- an absolute path on a filesystem every node mounts (NFS, a cluster volume): the result
  is read in place;
- a URI Ray Train's pyarrow filesystems understand (`s3://bucket/prefix`, `gs://...`,
  `file:///...`): the result checkpoint is downloaded into the job's folder first.

Each job gets its own subfolder named after the job, so a re-launched job finds its
run's snapshot and newest checkpoint there again (how a restarted service resumes it).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from forgeline.trainer.recipes.common import TRAINER_STATE

log = logging.getLogger(__name__)

DEFAULT_FOLDER = "ray"  # under the job's folder when no storage is configured
DOWNLOAD_FOLDER = "checkpoint"  # under the job's folder, for a result read from a URI


def is_uri(location: str) -> bool:
    """Whether `location` names a filesystem by scheme (`s3://...`) rather than a path."""
    return "://" in location


@dataclass(frozen=True)
class TrainStorage:
    """The training storage setting: a shared path, a URI, or empty for each job's folder.

    Args:
        root: `FORGELINE_TRAIN_STORAGE` as given.

    Raises:
        ValueError: `root` is a relative path (it would mean another folder on each node).
    """

    root: str = ""

    def __post_init__(self) -> None:
        if self.root and not is_uri(self.root) and not Path(self.root).expanduser().is_absolute():
            raise ValueError(
                "FORGELINE_TRAIN_STORAGE must be an absolute path every Ray node shares or a "
                f"URI such as s3://bucket/prefix, got {self.root!r}"
            )

    def location(self, job_id: str, work_dir: Path) -> str:
        """The job's storage: `<root>/<job_id>`, or `<work_dir>/ray` when no root is set."""
        if not self.root:
            return str(work_dir / DEFAULT_FOLDER)
        if not is_uri(self.root):
            return str(Path(self.root).expanduser() / job_id)
        parts = urlsplit(self.root)  # the job goes into the path, before any ?query
        path = str(PurePosixPath(parts.path or "/") / job_id)
        return urlunsplit(parts._replace(path=path))

    def prepare(self, location: str) -> None:
        """Creates a path location's folder (Ray Train creates URI locations itself)."""
        if not is_uri(location):
            Path(location).mkdir(parents=True, exist_ok=True)

    def fetch(self, location: str, checkpoint: str, work_dir: Path) -> Path:
        """The run's result checkpoint as a local folder.

        Args:
            location: The job's storage, as `location` gave it.
            checkpoint: The checkpoint's path on that storage's filesystem (a
                `ray.train.Checkpoint.path`: for a URI, without its scheme).
            work_dir: The job's folder; a checkpoint from a URI is downloaded there.

        Raises:
            OSError: the checkpoint could not be read or downloaded.
        """
        if not is_uri(location):
            if not Path(checkpoint, TRAINER_STATE).is_file():
                raise FileNotFoundError(
                    f"the result checkpoint {checkpoint} is not readable on the trainer's "
                    "machine; on a cluster of several machines FORGELINE_TRAIN_STORAGE must "
                    "be a folder every node shares, or a URI"
                )
            return Path(checkpoint)
        import pyarrow.fs

        filesystem, _ = pyarrow.fs.FileSystem.from_uri(location)
        local = work_dir / DOWNLOAD_FOLDER
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        log.info("downloading the result checkpoint %s from %s", checkpoint, location)
        pyarrow.fs.copy_files(
            checkpoint,
            str(local),
            source_filesystem=filesystem,
            destination_filesystem=pyarrow.fs.LocalFileSystem(),
        )
        return local

    def discard(self, location: str) -> None:
        """Removes a job's storage (a cancelled job's checkpoints); missing is fine."""
        if not self.root:
            return  # in the job's folder, which goes with the job
        try:
            if not is_uri(location):
                shutil.rmtree(location, ignore_errors=True)
                return
            import pyarrow.fs

            filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
            if filesystem.get_file_info(path).type == pyarrow.fs.FileType.Directory:
                filesystem.delete_dir(path)
        except OSError:
            log.warning("could not remove the training storage %s", location, exc_info=True)
