"""blobs tracked in SQL, so that garbage collection and uploads are safe across replicas

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("touch_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index(op.f("ix_blobs_touch_time"), "blobs", ["touch_time"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_blobs_touch_time"), table_name="blobs")
    op.drop_table("blobs")
