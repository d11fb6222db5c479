"""Rate limits of teams and users (limits/): a team's own limits and its new keys' defaults, a
user's limits.

Adds nullable columns only (`expansion`): instances of the previous version keep working while
this one starts, and ignore them.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None
# Only adds what code of the previous revision can ignore (storage/migrate.py, OLDEST_READER).
expansion = True


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("limits", sa.Text(), nullable=True))
        batch.add_column(sa.Column("key_limits", sa.Text(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("limits", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("limits")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("key_limits")
        batch.drop_column("limits")
