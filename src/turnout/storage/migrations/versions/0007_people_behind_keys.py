"""People behind keys: the person each key acts for and everyone who could use it (the two-person
rule counts people, and a person's lost authority reaches every key they issued); the level a
budget was set at; who proposed and decided a pending action and who acted in the audit log, as
people; a preset's public description.

Expand only (new nullable columns, a new table), and the new columns of existing keys, budgets and
pending actions are filled in from who issued what (`created_by`): a gateway of the previous
version keeps working on the same database during an upgrade.

Revision ID: 0007
Revises: 0006
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from turnout.domain.key_policy import MASTER_LINEAGE, Lineage, lineage_of_new_key

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table, columns in (
        ("api_keys", (("person", sa.String(40)), ("budget_set_level", sa.String(16)))),
        ("budgets", (("set_level", sa.String(16)),)),
        ("audit_log", (("actor_person", sa.String(40)),)),
        ("pending_actions", (("requested_by_person", sa.String(40)), ("decided_by_person", sa.String(40)))),
        ("presets", (("description", sa.String(500)),)),
    ):
        for name, kind in columns:
            op.add_column(table, sa.Column(name, kind, nullable=True))
    op.create_table(
        "key_controllers",
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("person", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "person", name="pk_key_controllers"),
    )
    op.create_index("ix_key_controllers_person", "key_controllers", ["person"])
    _fill_in(op.get_bind())


def _fill_in(conn: sa.Connection) -> None:
    keys = sa.table(
        "api_keys",
        sa.column("id"),
        sa.column("kind"),
        sa.column("user_id"),
        sa.column("team_id"),
        sa.column("created_by"),
        sa.column("max_budget_micros"),
        sa.column("person"),
        sa.column("budget_set_level"),
    )
    rows = {r.id: r for r in conn.execute(sa.select(keys))}
    lineages: dict[str, Lineage] = {}

    def lineage(key_id: str | None, seen: frozenset[str] = frozenset()) -> Lineage:
        row = rows.get(key_id or "")
        if row is None or row.kind == "master" or key_id in seen:
            return MASTER_LINEAGE  # issued by the master key (or by one no longer stored)
        if key_id not in lineages:
            lineages[row.id] = lineage_of_new_key(lineage(row.created_by, seen | {row.id}), row.user_id)
        return lineages[row.id]

    def level(key_id: str | None) -> str:
        issuer = rows.get(key_id or "")
        return "team" if issuer is not None and issuer.kind != "master" and issuer.team_id else "organisation"

    controllers = []
    for row in rows.values():
        found = lineage(row.id)
        values: dict[str, Any] = {"person": found.person}
        if row.max_budget_micros is not None:
            values["budget_set_level"] = level(row.created_by)
        conn.execute(sa.update(keys).where(keys.c.id == row.id).values(**values))
        controllers += [{"key_id": row.id, "person": p} for p in sorted(found.controllers)]
    if controllers:
        conn.execute(
            sa.table("key_controllers", sa.column("key_id"), sa.column("person")).insert(), controllers
        )
    budgets = sa.table("budgets", sa.column("id"), sa.column("created_by"), sa.column("set_level"))
    for budget in conn.execute(sa.select(budgets)).all():
        conn.execute(
            sa.update(budgets).where(budgets.c.id == budget.id).values(set_level=level(budget.created_by))
        )
    pending = sa.table(
        "pending_actions", sa.column("id"), sa.column("requested_by"), sa.column("requested_by_person")
    )
    for action in conn.execute(sa.select(pending)).all():
        person = lineage(action.requested_by).person
        conn.execute(sa.update(pending).where(pending.c.id == action.id).values(requested_by_person=person))
