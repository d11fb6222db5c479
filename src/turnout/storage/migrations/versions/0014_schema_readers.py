"""Which turnout can serve the database at each schema revision (storage/migrate.py).

Adds a table only (`expansion`): instances of the previous version keep working while this one
starts, and ignore it.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None
# Only adds what code of the previous revision can ignore: that code may serve a database at this
# revision (storage/migrate.py, OLDEST_READER).
expansion = True


def upgrade() -> None:
    op.create_table(
        "schema_readers",
        sa.Column("revision", sa.String(32), nullable=False),
        sa.Column("oldest_reader", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("revision", name="pk_schema_readers"),
    )


def downgrade() -> None:
    op.drop_table("schema_readers")
