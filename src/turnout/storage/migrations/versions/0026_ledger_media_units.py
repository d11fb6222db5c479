"""Each ledger row records what an image or audio request was billed by: the images generated,
the seconds of audio transcribed, the characters read aloud. Existing rows have none (0).

Adds columns with a default only (`expansion`): instances of the previous version keep writing
rows (without them) while this one starts.

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None
expansion = True


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("images", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("audio_seconds", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("characters", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("characters")
        batch.drop_column("audio_seconds")
        batch.drop_column("images")
