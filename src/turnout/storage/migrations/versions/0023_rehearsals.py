"""Rehearsing a vendor's exit: ledger rows of a mirror's shadows are marked `rehearsal`, and game
days (a provider out of service for some traffic for a window) are kept for every instance.

Adds a column with a default and a table only (`expansion`): instances of the previous version
keep writing rows (without it) while this one starts.

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None
expansion = True


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("rehearsal", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "game_days",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("share", sa.Float(), nullable=True),
        sa.Column("teams", sa.Text(), nullable=True),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("min_requests", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(40), nullable=True),
        sa.Column("end_reason", sa.String(200), nullable=True),
    )
    op.create_index("ix_game_days_ends_at", "game_days", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_game_days_ends_at", table_name="game_days")
    op.drop_table("game_days")
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("rehearsal")
