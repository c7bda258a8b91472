"""Tables of the registry's metadata store (SQLAlchemy ORM). Changes go through migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


class ModelRow(Base):
    """A named series of versions."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tags: Mapped[list[TagRow]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class TagRow(Base):
    """One tag of a model."""

    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class VersionRow(Base):
    """One version of a model, with its lineage."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[int] = mapped_column(Integer, index=True)
    job_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    dataset_digest: Mapped[str] = mapped_column(String(64), default="", index=True)
    spec_json: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    failure_reason: Mapped[str] = mapped_column(Text, default="")
    manifest_digest: Mapped[str] = mapped_column(String(64), default="", index=True)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model: Mapped[ModelRow] = relationship(lazy="joined")


class ParentRow(Base):
    """A lineage edge: `child_id` was derived from `parent_id`."""

    __tablename__ = "version_parents"

    child_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class EntryRow(Base):
    """One file of a version's manifest."""

    __tablename__ = "manifest_entries"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class BlobRow(Base):
    """A stored (or arriving) blob and when it was last touched by an upload or a link.

    Garbage collection takes only blobs no live version references and nobody touched
    within its grace period, so an upload between storing bytes and linking them, on any
    replica, is never collected.
    """

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    touch_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AliasRow(Base):
    """Where an alias of a model points now."""

    __tablename__ = "aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)


class AliasEventRow(Base):
    """One move of an alias, kept forever."""

    __tablename__ = "alias_events"
    __table_args__ = (Index("ix_alias_events_model_alias", "model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    alias: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    previous_version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(256), default="")
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EvaluationRow(Base):
    """An evaluation report attached to a version."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    suite: Mapped[str] = mapped_column(String(128), index=True)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    subjects: Mapped[dict] = mapped_column(JSON, default=dict)
    subject_samples: Mapped[dict] = mapped_column(JSON, default=dict)
    job_id: Mapped[str] = mapped_column(String(64), default="")
    num_samples: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
