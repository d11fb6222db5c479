"""Virtual keys: owner, allowed models, expiry, budget, limits, metadata, issuer, rotation.

Expand only (new nullable columns): a gateway of the previous version keeps working on the same
database during an upgrade.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    ("team_id", sa.String(40)),
    ("user_id", sa.String(40)),
    ("allowed_models", sa.Text()),
    ("expires_at", sa.DateTime(timezone=True)),
    ("max_budget_micros", sa.BigInteger()),
    ("limits", sa.Text()),
    ("metadata", sa.Text()),
    ("created_by", sa.String(40)),
    ("rotated_to", sa.String(40)),
)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
