"""The rate limits of teams and users (and a team's defaults for its new keys) and teams' priority
classes, held in memory for the hot path: read on start, changed here at once by the admin API, and
read again every `REFRESH_SECONDS` for changes made on other instances."""

from __future__ import annotations

import logging
from typing import cast

import sqlalchemy as sa

from turnout.domain.principal import Priority
from turnout.domain.rate_limits import RateLimits, stored_limits
from turnout.limits.priority import RANK
from turnout.periodic import Periodic
from turnout.storage.database import Database
from turnout.storage.tables import teams, users

log = logging.getLogger("turnout.limits")

REFRESH_SECONDS = 5.0


class LimitBook:
    def __init__(self, default_priority: Priority = "standard") -> None:
        self.default_priority: Priority = default_priority  # of a caller whose key and team have none
        self.team_priorities: dict[str, Priority] = {}
        self.teams: dict[str, RateLimits] = {}
        self.key_defaults: dict[str, RateLimits] = {}
        self.users: dict[str, RateLimits] = {}
        self.database: Database | None = None
        self.refresher = Periodic(self.refresh, REFRESH_SECONDS, "reading rate limits")

    async def load(self, database: Database) -> None:
        self.database = database
        await self.refresh()

    def start(self) -> None:
        self.refresher.start()

    async def refresh(self) -> None:
        assert self.database is not None
        team_query = sa.select(teams.c.id, teams.c.limits, teams.c.key_limits, teams.c.priority).where(
            teams.c.deleted_at.is_(None),
            sa.or_(
                teams.c.limits.is_not(None), teams.c.key_limits.is_not(None), teams.c.priority.is_not(None)
            ),
        )
        user_query = sa.select(users.c.id, users.c.limits).where(
            users.c.deleted_at.is_(None), users.c.limits.is_not(None)
        )
        async with self.database.engine.connect() as conn:
            team_rows = (await conn.execute(team_query)).all()
            user_rows = (await conn.execute(user_query)).all()
        found_teams: dict[str, RateLimits] = {}
        found_defaults: dict[str, RateLimits] = {}
        found_users: dict[str, RateLimits] = {}
        found_priorities: dict[str, Priority] = {}
        for team in team_rows:
            if team.priority in RANK:
                found_priorities[team.id] = cast(Priority, team.priority)
            own, defaults = stored_limits(team.limits), stored_limits(team.key_limits)
            if own is not None:
                found_teams[team.id] = own
            if defaults is not None:
                found_defaults[team.id] = defaults
        for user in user_rows:
            limits = stored_limits(user.limits)
            if limits is not None:
                found_users[user.id] = limits
        self.teams, self.key_defaults, self.users = found_teams, found_defaults, found_users
        self.team_priorities = found_priorities

    def team_priority(self, team_id: str | None) -> Priority | None:
        return None if team_id is None else self.team_priorities.get(team_id)

    def put_team_priority(self, team_id: str, priority: Priority | None) -> None:
        if priority is None:
            self.team_priorities.pop(team_id, None)
        else:
            self.team_priorities[team_id] = priority

    def put_team(self, team_id: str, limits: RateLimits | None, key_limits: RateLimits | None) -> None:
        _put(self.teams, team_id, limits)
        _put(self.key_defaults, team_id, key_limits)

    def put_user(self, user_id: str, limits: RateLimits | None) -> None:
        _put(self.users, user_id, limits)

    async def aclose(self) -> None:
        await self.refresher.aclose()


def _put(book: dict[str, RateLimits], subject: str, limits: RateLimits | None) -> None:
    if limits is None or limits.empty:
        book.pop(subject, None)
    else:
        book[subject] = limits
