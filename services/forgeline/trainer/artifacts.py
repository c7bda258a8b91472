"""The trainer's view of the registry: resolve references, pull versions, register results.

Everything moves by reference through the registry, content-addressed: pulling a version
the local cache already holds moves nothing, and pushing content the registry already
has moves no bytes. `Artifacts` is the interface the planner and runner use;
`RegistryArtifacts` implements it over the registry client.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from forgeline.client.channel import ChannelOptions
from forgeline.client.services import RegistryClient
from forgeline.client.transfer import pull_version, push_folder
from forgeline.common.settings import ServiceName, Settings, cache_dir
from forgeline.v1 import registry_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    """What the trainer needs to know about a registry version."""

    model: str
    number: int
    kind: int
    digest: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The pinned reference `model:number`."""
        return f"{self.model}:{self.number}"

    @property
    def kind_name(self) -> str:
        """The kind without its prefix, e.g. `DATASET`."""
        return registry_pb2.VersionKind.Name(self.kind).removeprefix("VERSION_KIND_")


@dataclass(frozen=True)
class Registration:
    """A version to register: files, kind, parents and provenance."""

    folder: Path
    model: str
    kind: int
    parents: tuple[str, ...] = ()
    job_id: str = ""
    dataset_digest: str = ""
    spec_json: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    description: str = ""


class Artifacts(Protocol):
    """Resolves, fetches and registers versions."""

    def resolve(self, ref: str) -> VersionInfo:
        """Resolves a reference to one READY version.

        Raises:
            NotFound: no such model, version or alias.
        """
        ...

    def pull(self, ref: str) -> Path:
        """Returns a local folder holding the version's files."""
        ...

    def register(self, registration: Registration) -> VersionInfo:
        """Uploads a folder as a new READY version and returns it."""
        ...


@dataclass(frozen=True)
class RegistryAddress:
    """How a process (the service or a Ray worker) reaches the registry and its cache."""

    address: str
    token: str = ""
    tls: bool = False
    ca_file: str = ""
    cache: str = ""
    local_blobs: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryAddress:
        """The registry of a service's settings; its blob folder is read in place when local."""
        blobs = settings.home / ServiceName.REGISTRY.value / "blobs"
        return cls(
            address=settings.addresses.get(ServiceName.REGISTRY, "127.0.0.1:50051"),
            token=settings.token,
            tls=settings.tls.enabled or bool(settings.tls.ca_file),
            ca_file=settings.tls.ca_file,
            cache=str(cache_dir() / "versions"),
            local_blobs=str(blobs) if blobs.is_dir() else "",
        )


class RegistryArtifacts:
    """`Artifacts` over the registry service. Thread-safe; opens its channel lazily."""

    def __init__(self, where: RegistryAddress):
        self.where = where
        self._client: RegistryClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> RegistryClient:
        """The registry client (one channel per instance)."""
        with self._lock:
            if self._client is None:
                self._client = RegistryClient(
                    self.where.address,
                    ChannelOptions(
                        token=self.where.token, tls=self.where.tls, ca_file=self.where.ca_file
                    ),
                )
            return self._client

    def close(self) -> None:
        """Closes the channel."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def resolve(self, ref: str) -> VersionInfo:
        """Resolves a reference to one READY version."""
        return _info(self.client.get_version(ref))

    def pull(self, ref: str) -> Path:
        """Pulls a version into the local cache (hard links when the blobs are local).

        Processes on one machine (the service, several workers) take turns through a file
        lock, so none sees another's half-written folder.
        """
        local = Path(self.where.local_blobs) if self.where.local_blobs else None
        if local is not None and not local.is_dir():
            local = None
        cache = Path(self.where.cache)
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".pull.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return pull_version(self.client, ref, cache, local_blobs=local)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def register(self, registration: Registration) -> VersionInfo:
        """Uploads a folder as a new READY version, creating the model when needed."""
        r = registration
        version = push_folder(
            self.client,
            r.folder,
            r.model,
            r.kind,
            parents=r.parents,
            lineage=registry_pb2.Lineage(
                job_id=r.job_id, dataset_digest=r.dataset_digest, spec_json=r.spec_json
            ),
            metadata=r.metadata,
            metrics=r.metrics,
            description=r.description,
        )
        log.info("registered %s:%d", version.model, version.number)
        return _info(version)


def _info(version: registry_pb2.Version) -> VersionInfo:
    return VersionInfo(
        model=version.model,
        number=version.number,
        kind=version.kind,
        digest=version.manifest_digest,
        metadata=dict(version.metadata),
    )
