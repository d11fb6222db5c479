"""The running totals by provider (spend_rollups' dimension `provider`), and the ledger's totals by
every dimension at once (spend_cube: per hour and day, per combination of key, team, user, alias,
preset, model, deployment and provider), computed here from the rows already in the ledger, for
`GET /admin/spend`.

Adds a table and cells only, but instances of the previous version write ledger rows without adding them to
it: stop them before this one starts (their journals are kept and moved by this version).
Rows deleted by ledger retention before this version are not in these new totals (the other
dimensions of `spend_rollups` still count them).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from turnout.storage.cube import backfill_cube
from turnout.storage.rollups import backfill

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None
# Not an expansion: code of an older revision would write ledger rows without adding them to these
# totals (storage/migrate.py, OLDEST_READER).
expansion = False

# The cube's shape at this revision, frozen here: later revisions add figures (0025: search_units)
# with migrations of their own, while storage/cube.py names today's.
CUBE_COLUMNS = ("key_id", "team_id", "user_id", "alias", "preset", "model", "deployment", "provider")
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
CUBE_COUNTS = (
    "requests",
    "attempts",
    "failed",
    *SUMMED,
    "cost_unknown",
    "estimated",
    *(f"requests_{m}" for m in range(1, 8)),
    *(f"failed_{m}" for m in range(1, 8)),
)
LENGTHS = {"key_id": 40, "team_id": 40, "user_id": 40, "alias": 256, "preset": 128, "model": 256}


def upgrade() -> None:
    op.create_table(
        "spend_cube",
        sa.Column("grain", sa.String(8), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        *(
            sa.Column(c, sa.String(LENGTHS.get(c, 256 if c == "deployment" else 128)), nullable=False)
            for c in CUBE_COLUMNS
        ),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in CUBE_COUNTS),
        sa.PrimaryKeyConstraint("grain", "bucket", *CUBE_COLUMNS, name="pk_spend_cube"),
    )
    op.create_index("ix_spend_cube_grain_team_bucket", "spend_cube", ["grain", "team_id", "bucket"])
    op.create_index("ix_spend_cube_grain_key_bucket", "spend_cube", ["grain", "key_id", "bucket"])
    backfill_cube(op.get_bind(), summed=SUMMED)
    backfill(op.get_bind(), dims=("provider",), summed=SUMMED)


def downgrade() -> None:
    op.execute("DELETE FROM spend_rollups WHERE dim = 'provider'")
    op.drop_index("ix_spend_cube_grain_key_bucket", "spend_cube")
    op.drop_index("ix_spend_cube_grain_team_bucket", "spend_cube")
    op.drop_table("spend_cube")
