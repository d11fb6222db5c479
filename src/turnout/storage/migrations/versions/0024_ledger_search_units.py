"""Each ledger row records the search units a reranker billed (`POST /v1/rerank`, priced per
1,000 search units). Existing rows have none (0).

Adds a column with a default only (`expansion`): instances of the previous version keep writing
rows (without it) while this one starts.

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None
expansion = True


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("search_units", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("search_units")
