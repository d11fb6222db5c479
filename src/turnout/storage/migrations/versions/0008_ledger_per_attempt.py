"""The ledger holds one row per upstream attempt: keyed by the request's id and the attempt's
number (0: the request reached no upstream). Existing rows are their request's only row: attempt 1
when they reached an upstream, 0 when they did not.

Changes the ledger's key: instances of the previous version must be stopped before this one
starts (their journals are kept and moved by this version, as rows of attempt 1).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger", recreate="always") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.drop_constraint("pk_ledger", type_="primary")
        batch.create_primary_key("pk_ledger", ["request_id", "attempt"])
    op.execute("UPDATE ledger SET attempt = 0 WHERE attempts = 0")


def downgrade() -> None:
    op.execute("DELETE FROM ledger WHERE attempt > 1")
    with op.batch_alter_table("ledger", recreate="always") as batch:
        batch.drop_constraint("pk_ledger", type_="primary")
        batch.create_primary_key("pk_ledger", ["request_id"])
        batch.drop_column("attempt")
