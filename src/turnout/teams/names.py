"""Teams and users by name as well as by id: a team's unique name, a user's email. What the admin
API and the CLI accept wherever they take a team's or a user's id."""

from __future__ import annotations

import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.tables import api_keys, teams, users


class Names:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def team(self, ref: str | None) -> str | None:
        """The id of the team `ref` names (its id, or the name of a team not deleted); `ref` as it
        is when none does (whoever uses it then answers that there is no such team)."""
        if ref is None or ref.startswith("team_"):
            return ref
        query = sa.select(teams.c.id).where(teams.c.name == ref, teams.c.deleted_at.is_(None))
        async with self.database.engine.connect() as conn:
            found = (await conn.execute(query)).scalar()
        return ref if found is None else str(found)

    async def user(self, ref: str | None) -> str | None:
        """The id of the user `ref` names (their id, or their email, in any case)."""
        if ref is None or ref.startswith("user_") or "@" not in ref:
            return ref
        query = sa.select(users.c.id).where(
            sa.func.lower(users.c.email) == ref.lower(), users.c.deleted_at.is_(None)
        )
        async with self.database.engine.connect() as conn:
            found = (await conn.execute(query)).scalar()
        return ref if found is None else str(found)

    async def labels(self, ids: dict[str, set[str]]) -> dict[str, str]:
        """What people call keys, teams and users (`ids` by "key", "team", "user"): a key's and a
        team's name, a user's email, by id; one query for each kind asked about. For showing
        things the caller may already see: it checks no authority of its own."""
        columns = {"key": (api_keys.c.id, api_keys.c.name), "team": (teams.c.id, teams.c.name)}
        columns["user"] = (users.c.id, users.c.email)
        found: dict[str, str] = {}
        async with self.database.engine.connect() as conn:
            for kind, wanted in ids.items():
                if wanted and kind in columns:
                    id_column, label = columns[kind]
                    rows = await conn.execute(
                        sa.select(id_column, label).where(id_column.in_(sorted(wanted)))
                    )
                    found.update({str(r[0]): str(r[1]) for r in rows if r[1] is not None})
        return found
