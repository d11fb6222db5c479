"""Each ledger row says why its attempt failed: the error's code (`upstream_server_error`,
`rate_limit_exceeded`...), `client_closed` for a client that left (499) or `gateway_shutdown` for
one the gateway's shutdown cut short (503). Existing rows have none recorded (NULL).

Adds a column only: instances of the previous version can keep writing while this one starts.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("reason", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("reason")
