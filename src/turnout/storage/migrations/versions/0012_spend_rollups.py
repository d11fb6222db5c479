"""Running totals of the ledger (spend_rollups: by quarter-hour, hour, day and all time; by key,
team, user, model, alias, deployment, preset and preset team), computed here from the rows already
in the ledger, and the ledger's retention horizon (ledger_horizon).

Adds tables only, but instances of the previous version write ledger rows without adding them to
the totals: stop them before this one starts (their journals are kept and moved by this version,
totals included).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from turnout.storage.rollups import backfill

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The ledger's columns the totals of this revision sum, frozen here: later revisions add figures
# (0025: search_units) with migrations of their own, while storage/rollups.py names today's.
SUMMED = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "customer_price_micros",
    "revenue_share_micros",
)
COUNTS = ("requests", "attempts", "failed", *SUMMED, "cost_unknown", "estimated")


def upgrade() -> None:
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "spend_rollups",
        sa.Column("grain", sa.String(8), nullable=False),
        sa.Column("dim", sa.String(16), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("bucket", stamp, nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS),
        sa.PrimaryKeyConstraint("grain", "dim", "value", "bucket", name="pk_spend_rollups"),
    )
    op.create_index("ix_spend_rollups_grain_dim_bucket", "spend_rollups", ["grain", "dim", "bucket"])
    op.create_table(
        "ledger_horizon",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("pruned_before", stamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_horizon"),
    )
    # the dimensions of this revision (0018 adds provider's cells)
    backfill(
        op.get_bind(),
        dims=("key", "team", "user", "model", "alias", "deployment", "preset", "preset_team"),
        summed=SUMMED,
    )


def downgrade() -> None:
    op.drop_table("ledger_horizon")
    op.drop_index("ix_spend_rollups_grain_dim_bucket", "spend_rollups")
    op.drop_table("spend_rollups")
