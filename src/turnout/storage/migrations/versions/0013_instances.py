"""The instances sharing a database: one row each, renewed while it runs (storage/instances.py).

Adds a table only: instances of the previous version keep working while this one starts (they do
not register, so they are not counted).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("shared_counters", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )
    op.create_index("ix_instances_expires_at", "instances", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_instances_expires_at", table_name="instances")
    op.drop_table("instances")
