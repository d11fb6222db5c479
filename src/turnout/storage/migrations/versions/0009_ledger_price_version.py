"""Each ledger row records what its price depended on: the price version it was charged at (the
version's date), the service tier (flex, priority, batch...) and the cache writes kept an hour.
Existing rows have none recorded (NULL, NULL, 0).

Adds columns only: instances of the previous version can keep writing while this one starts.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("price_version", sa.String(32), nullable=True))
        batch.add_column(sa.Column("service_tier", sa.String(32), nullable=True))
        batch.add_column(
            sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("cache_write_1h_tokens")
        batch.drop_column("service_tier")
        batch.drop_column("price_version")
