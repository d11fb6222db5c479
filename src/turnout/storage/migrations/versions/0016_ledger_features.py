"""Each ledger row records what its request needed (tools, images, structured outputs, streaming
...: domain/request_features.py), for the exit-readiness report. Existing rows have none (0).

Adds a column with a default only (`expansion`): instances of the previous version keep writing
rows (without it) while this one starts.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None
expansion = True


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("features", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("features")
