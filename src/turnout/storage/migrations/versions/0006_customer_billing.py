"""Customer billing: plans, each team's terms, credit balances, published presets; the ledger's
customer price and revenue share. Providers taken out of service through the admin API.

Expand only (new tables, new nullable columns): a gateway of the previous version keeps working on
the same database during an upgrade.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LEDGER_COLUMNS = (
    ("customer_price_micros", sa.BigInteger()),
    ("preset", sa.String(128)),
    ("preset_team_id", sa.String(40)),
    ("revenue_share_micros", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        for name, kind in LEDGER_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_index("ix_ledger_preset_team_id", "ledger", ["preset_team_id"])
    op.create_table(
        "plans",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("markup", sa.String(32), nullable=True),
        sa.Column("input_price", sa.String(32), nullable=True),
        sa.Column("output_price", sa.String(32), nullable=True),
        sa.Column("included_tokens", sa.BigInteger(), nullable=False),
        sa.Column("monthly_fee_micros", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_plans"),
        sa.UniqueConstraint("name", name="uq_plans_name"),
    )
    op.create_table(
        "team_billing",
        sa.Column("team_id", sa.String(40), nullable=False),
        sa.Column("plan_id", sa.String(40), nullable=True),
        sa.Column("markup", sa.String(32), nullable=True),
        sa.Column("prepaid", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("team_id", name="pk_team_billing"),
    )
    op.create_table(
        "credits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("period", sa.String(16), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_credits"),
        sa.UniqueConstraint("team_id", "kind", "period", name="uq_credits_team_id"),
    )
    op.create_index("ix_credits_team_id", "credits", ["team_id"])
    op.create_table(
        "presets",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("params", sa.Text(), nullable=True),
        sa.Column("revenue_share", sa.String(32), nullable=False),
        sa.Column("share_cap_micros", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_presets"),
    )

    op.create_table(
        "removed_providers",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_by", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_removed_providers"),
    )


def downgrade() -> None:
    op.drop_table("removed_providers")
    op.drop_table("presets")
    op.drop_index("ix_credits_team_id", table_name="credits")
    op.drop_table("credits")
    op.drop_table("team_billing")
    op.drop_table("plans")
    op.drop_index("ix_ledger_preset_team_id", table_name="ledger")
    with op.batch_alter_table("ledger") as batch:
        for name, _ in reversed(LEDGER_COLUMNS):
            batch.drop_column(name)
