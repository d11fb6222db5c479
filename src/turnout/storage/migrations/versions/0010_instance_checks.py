"""Values every instance sharing the database must agree on, written by the first one to start:
today the check of the key-hash secret (an HMAC of a fixed label), so an instance hashing keys
with another secret refuses to start instead of refusing every key.

Adds a table only: instances of the previous version keep working while this one starts.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_checks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_instance_checks"),
    )


def downgrade() -> None:
    op.drop_table("instance_checks")
