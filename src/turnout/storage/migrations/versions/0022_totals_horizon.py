"""How far the hour cells of the running totals have been pruned (totals_horizon): hour cells
older than `storage.hourly_totals_retention_days` are deleted, their day cells keeping the totals,
and reports widen a span reaching before the horizon to whole days.

Adds a table only (`expansion`): instances of the previous version keep working (they prune no
hour cells).

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None
# Only adds a table older code ignores (storage/migrate.py, OLDEST_READER).
expansion = True


def upgrade() -> None:
    op.create_table(
        "totals_horizon",
        sa.Column("grain", sa.String(8), nullable=False),
        sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("grain", name="pk_totals_horizon"),
    )


def downgrade() -> None:
    op.drop_table("totals_horizon")
