"""Domain types of the registry and their protobuf conversions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from forgeline.client import exceptions, manifests
from forgeline.client.refs import RefError, check_name
from forgeline.common.sql import to_timestamp
from forgeline.v1 import common_pb2, registry_pb2


@dataclass(frozen=True)
class Entry:
    """One file of a version: relative path, sha256 and size."""

    path: str
    sha256: str
    size: int

    def to_pb(self) -> registry_pb2.ManifestEntry:
        """The wire form."""
        return registry_pb2.ManifestEntry(path=self.path, sha256=self.sha256, size=self.size)


def manifest_digest(entries: list[Entry]) -> str:
    """sha256 over the sorted manifest: identical content gives the same digest."""
    return manifests.manifest_digest((e.path, e.sha256, e.size) for e in entries)


# Free text the registry stores: descriptions, reasons, metadata values, specs.
MAX_TEXT = 1024 * 1024
# Keys, suite and metric names, actors, job ids: short labels.
MAX_LABEL = 128
MAX_COUNT = 2**63 - 1


def check_text(v: exceptions.Violations, field: str, value: str, limit: int = MAX_TEXT) -> None:
    """Records a problem when `value` cannot be stored as text: too long, or a NUL in it."""
    if "\x00" in value:
        v.add(field, "must not contain NUL characters")
    elif len(value) > limit:
        v.add(field, f"is longer than {limit} characters")


def check_values(v: exceptions.Violations, field: str, values: Mapping[str, object]) -> None:
    """Records problems of a name -> value map: bad names, and numbers that are not finite."""
    for key, value in values.items():
        check_text(v, f"{field}[{key[:40]!r}]", key, MAX_LABEL)
        if isinstance(value, str):
            check_text(v, f"{field}[{key[:40]!r}]", value)
        elif not math.isfinite(value):
            v.add(f"{field}[{key[:40]!r}]", f"{value} is not a finite number")


def check_texts(**fields: str | tuple[str, int]) -> None:
    """Refuses free text the database cannot store (NUL characters, too long), by field.

    Each value is the text, or (text, longest allowed).

    Raises:
        InvalidArgument: naming every such field.
    """
    v = exceptions.Violations()
    for name, value in fields.items():
        text, limit = value if isinstance(value, tuple) else (value, MAX_TEXT)
        check_text(v, name, text, limit)
    v.raise_if_any()


def check_model_name(name: str, field: str = "name") -> str:
    """Validates a model or alias name, naming `field` in the error.

    Raises:
        InvalidArgument: the name has characters or a length that is not allowed.
    """
    try:
        return check_name(name, field)
    except RefError as exc:
        raise exceptions.InvalidArgument(field, str(exc)) from None


def ref_from_pb(ref: common_pb2.ModelRef, field: str = "ref") -> common_pb2.ModelRef:
    """Validates a reference received on the wire.

    Raises:
        InvalidArgument: the name or alias is malformed, or the version is 0.
    """
    check_model_name(ref.name, f"{field}.name")
    selector = ref.WhichOneof("selector")
    if selector == "alias":
        check_model_name(ref.alias, f"{field}.alias")
    elif selector == "version" and ref.version == 0:
        raise exceptions.InvalidArgument(f"{field}.version", "versions start at 1")
    return ref


@dataclass
class Model:
    """A named series of versions."""

    name: str
    description: str
    tags: list[str]
    create_time: datetime
    latest_version: int = 0
    aliases: dict[str, int] = field(default_factory=dict)

    def to_pb(self) -> registry_pb2.Model:
        """The wire form."""
        return registry_pb2.Model(
            name=self.name,
            description=self.description,
            tags=self.tags,
            create_time=to_timestamp(self.create_time),
            latest_version=self.latest_version,
            aliases=self.aliases,
        )


@dataclass
class Version:
    """One version of a model."""

    model: str
    number: int
    kind: int
    state: int
    parents: list[tuple[str, int]]
    job_id: str
    dataset_digest: str
    spec_json: str
    metrics: dict[str, float]
    metadata: dict[str, str]
    description: str
    aliases: list[str]
    file_count: int
    total_bytes: int
    create_time: datetime
    update_time: datetime
    failure_reason: str
    manifest_digest: str

    @property
    def key(self) -> str:
        """`model:number`."""
        return f"{self.model}:{self.number}"

    def to_pb(self) -> registry_pb2.Version:
        """The wire form."""
        return registry_pb2.Version(
            model=self.model,
            number=self.number,
            kind=self.kind,
            state=self.state,
            parents=[common_pb2.ModelRef(name=n, version=v) for n, v in self.parents],
            lineage=registry_pb2.Lineage(
                job_id=self.job_id, dataset_digest=self.dataset_digest, spec_json=self.spec_json
            ),
            metrics=self.metrics,
            metadata=self.metadata,
            description=self.description,
            aliases=self.aliases,
            file_count=self.file_count,
            total_bytes=self.total_bytes,
            create_time=to_timestamp(self.create_time),
            update_time=to_timestamp(self.update_time),
            failure_reason=self.failure_reason,
            manifest_digest=self.manifest_digest,
        )


@dataclass
class Evaluation:
    """An evaluation report of a version."""

    suite: str
    metrics: dict[str, float]
    subjects: dict[str, float]
    job_id: str
    num_samples: int
    create_time: datetime | None = None
    subject_samples: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, pb: registry_pb2.Evaluation) -> Evaluation:
        """Reads a report from the wire.

        Raises:
            InvalidArgument: no suite or no metrics.
        """
        v = exceptions.Violations()
        v.check(bool(pb.suite), "evaluation.suite", "is required")
        v.check(bool(pb.metrics), "evaluation.metrics", "at least one metric is required")
        check_text(v, "evaluation.suite", pb.suite, MAX_LABEL)
        check_text(v, "evaluation.job_id", pb.job_id, 64)
        check_values(v, "evaluation.metrics", pb.metrics)
        check_values(v, "evaluation.subjects", pb.subjects)
        check_values(v, "evaluation.subject_samples", pb.subject_samples)
        v.check(
            all(n <= MAX_COUNT for n in [pb.num_samples, *pb.subject_samples.values()]),
            "evaluation.num_samples",
            "is too large",
        )
        v.raise_if_any()
        return cls(
            pb.suite,
            dict(pb.metrics),
            dict(pb.subjects),
            pb.job_id,
            pb.num_samples,
            subject_samples=dict(pb.subject_samples),
        )

    def to_pb(self) -> registry_pb2.Evaluation:
        """The wire form."""
        return registry_pb2.Evaluation(
            suite=self.suite,
            metrics=self.metrics,
            subjects=self.subjects,
            job_id=self.job_id,
            num_samples=self.num_samples,
            create_time=to_timestamp(self.create_time),
            subject_samples=self.subject_samples,
        )


@dataclass
class AliasEvent:
    """One move of an alias."""

    alias: str
    version: int
    previous_version: int
    actor: str
    time: datetime

    def to_pb(self) -> registry_pb2.AliasEvent:
        """The wire form."""
        return registry_pb2.AliasEvent(
            alias=self.alias,
            version=self.version,
            previous_version=self.previous_version,
            actor=self.actor,
            time=to_timestamp(self.time),
        )
