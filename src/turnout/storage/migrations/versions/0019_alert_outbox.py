"""Budget alerts waiting to reach their webhooks (alert_outbox), so that none is lost on a restart.

Adds a table only: instances of the previous version keep working (they raise no webhook alerts).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None
# Only adds a table older code ignores (storage/migrate.py, OLDEST_READER).
expansion = True


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("budget_id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_outbox"),
    )
    op.create_index("ix_alert_outbox_state_next_at", "alert_outbox", ["state", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_state_next_at", "alert_outbox")
    op.drop_table("alert_outbox")
