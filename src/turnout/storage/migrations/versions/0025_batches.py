"""The files and batches of providers' batch APIs (batches/): the deployment that holds each, its
owner, the most a batch's lines can use, its last known state and when it was accounted.

Adds tables only (`expansion`): instances of the previous version keep working while this one
starts, and ignore them.

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None
# Only adds tables older code never reads (storage/migrate.py, OLDEST_READER).
expansion = True


def upgrade() -> None:
    op.create_table(
        "batch_files",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=True),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("max_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("max_output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batch_files"),
    )
    op.create_index("ix_batch_files_team_id", "batch_files", ["team_id"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("api", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("batch", sa.Text(), nullable=False),
        sa.Column("accounted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_index("ix_batches_team_id_created_at", "batches", ["team_id", "created_at"])
    op.create_index("ix_batches_accounted_at_status", "batches", ["accounted_at", "status"])


def downgrade() -> None:
    op.drop_index("ix_batches_accounted_at_status", table_name="batches")
    op.drop_index("ix_batches_team_id_created_at", table_name="batches")
    op.drop_table("batches")
    op.drop_index("ix_batch_files_team_id", table_name="batch_files")
    op.drop_table("batch_files")
