"""The request log: what logged keys and teams asked and were answered (request_logs), and who is
logged (request_log_settings).

Adds tables only (`expansion`): instances of the previous version keep working while this one
starts, and ignore them.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None
# Only adds what code of the previous revision can ignore (storage/migrate.py, OLDEST_READER).
expansion = True


def upgrade() -> None:
    op.create_table(
        "request_logs",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("api", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("deployment", sa.String(256), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_request_logs"),
    )
    op.create_index("ix_request_logs_at_request_id", "request_logs", ["at", "request_id"])
    op.create_index("ix_request_logs_key_id_at", "request_logs", ["key_id", "at", "request_id"])
    op.create_index("ix_request_logs_team_id_at", "request_logs", ["team_id", "at", "request_id"])
    op.create_table(
        "request_log_settings",
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(40), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("scope", "subject_id", name="pk_request_log_settings"),
    )


def downgrade() -> None:
    op.drop_table("request_log_settings")
    op.drop_index("ix_request_logs_team_id_at", table_name="request_logs")
    op.drop_index("ix_request_logs_key_id_at", table_name="request_logs")
    op.drop_index("ix_request_logs_at_request_id", table_name="request_logs")
    op.drop_table("request_logs")
