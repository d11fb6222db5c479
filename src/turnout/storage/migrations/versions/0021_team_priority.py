"""A team's priority class (limits/priority.py): under overload its keys without a class of their
own are shed as this class says.

Adds a nullable column only (`expansion`): instances of the previous version keep working while
this one starts, and ignore it.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None
# Only adds what code of the previous revision can ignore (storage/migrate.py, OLDEST_READER).
expansion = True


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("priority", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("priority")
