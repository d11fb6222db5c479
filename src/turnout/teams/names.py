"""Teams and users by name as well as by id: a team's unique name, a user's email. What the admin
API and the CLI accept wherever they take a team's or a user's id."""

from __future__ import annotations

import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.tables import teams, users


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
