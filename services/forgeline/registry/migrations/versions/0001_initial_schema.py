"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 18:06:25.251838
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alias_events", schema=None) as batch_op:
        batch_op.create_index("ix_alias_events_model_alias", ["model_id", "alias"], unique=False)

    op.create_table(
        "model_tags",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
        ),
        sa.PrimaryKeyConstraint("model_id", "tag"),
    )
    with op.batch_alter_table("model_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_tags_tag"), ["tag"], unique=False)

    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_digest", sa.String(length=64), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=False),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "number"),
    )
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_versions_dataset_digest"), ["dataset_digest"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_versions_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_versions_kind"), ["kind"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_versions_manifest_digest"), ["manifest_digest"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_versions_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_versions_state"), ["state"], unique=False)

    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
        ),
        sa.PrimaryKeyConstraint("model_id", "name"),
    )
    with op.batch_alter_table("aliases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_aliases_version_id"), ["version_id"], unique=False)

    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("suite", sa.String(length=128), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("num_samples", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evaluations_suite"), ["suite"], unique=False)
        batch_op.create_index(batch_op.f("ix_evaluations_version_id"), ["version_id"], unique=False)

    op.create_table(
        "manifest_entries",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
        ),
        sa.PrimaryKeyConstraint("version_id", "path"),
    )
    with op.batch_alter_table("manifest_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_manifest_entries_sha256"), ["sha256"], unique=False)

    op.create_table(
        "version_parents",
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["versions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["versions.id"],
        ),
        sa.PrimaryKeyConstraint("child_id", "parent_id"),
    )
    with op.batch_alter_table("version_parents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_version_parents_parent_id"), ["parent_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("version_parents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_version_parents_parent_id"))

    op.drop_table("version_parents")
    with op.batch_alter_table("manifest_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_manifest_entries_sha256"))

    op.drop_table("manifest_entries")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluations_version_id"))
        batch_op.drop_index(batch_op.f("ix_evaluations_suite"))

    op.drop_table("evaluations")
    with op.batch_alter_table("aliases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aliases_version_id"))

    op.drop_table("aliases")
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_versions_state"))
        batch_op.drop_index(batch_op.f("ix_versions_model_id"))
        batch_op.drop_index(batch_op.f("ix_versions_manifest_digest"))
        batch_op.drop_index(batch_op.f("ix_versions_kind"))
        batch_op.drop_index(batch_op.f("ix_versions_job_id"))
        batch_op.drop_index(batch_op.f("ix_versions_dataset_digest"))

    op.drop_table("versions")
    with op.batch_alter_table("model_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_tags_tag"))

    op.drop_table("model_tags")
    with op.batch_alter_table("alias_events", schema=None) as batch_op:
        batch_op.drop_index("ix_alias_events_model_alias")

    op.drop_table("alias_events")
    op.drop_table("models")
