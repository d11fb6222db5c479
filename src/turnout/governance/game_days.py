"""Game days: an admin takes a configured provider out of service for a share of the traffic, or
for chosen teams (or a share of theirs), for a window, to rehearse losing it on real traffic.
Starting one is under the two-person rule by default (`start_game_day`); ending one early is not.

Every instance reads the active game days every `REFRESH_SECONDS` (the one that changed them applies
them before answering) and its router takes the provider out for the requests they cover
(routing/game_day.py). When the error rate of those requests passes the game day's threshold on
an instance, that instance stops at once and rolls it back for all (`rolled_back`); a window that
has run out is ended. Each start, end and rollback is in the audit log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.config.units import parse_duration
from turnout.domain.errors import InvalidRequest, ResourceNotFound
from turnout.domain.key_policy import require_organisation_admin, require_organisation_reader
from turnout.domain.principal import Principal
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.periodic import Periodic
from turnout.routing.game_day import Drill
from turnout.routing.router import Router
from turnout.storage.database import Database
from turnout.storage.tables import game_days, teams
from turnout.storage.times import as_utc, from_unix, unix_seconds

log = logging.getLogger("turnout.governance")

REFRESH_SECONDS = 1.0
MAX_DURATION = 7 * 24 * 3600.0  # a week: longer is an outage, not a rehearsal
MAX_TEAMS = 100
MAX_TEAM_ID = 40  # (the teams table's ids are at most this long)
LISTED = 100  # game days a list shows, newest first
# who ends a game day whose window ran out, or rolls one back (in the audit log)
TURNOUT = Principal(key_id="turnout", name="turnout (game days)", role="viewer", person="turnout")


def game_day_params(
    provider: str,
    duration: str | float,
    share: float | None,
    team_ids: list[str] | None,
    error_rate: float,
    min_requests: int,
) -> dict[str, Any]:
    """A game day's parameters checked (each refusal names its field), as an approval stores them."""
    if share is not None and not 0 < share <= 1:
        raise InvalidRequest("'share' must be more than 0 and at most 1.", param="share")
    if team_ids is not None and (
        not 0 < len(team_ids) <= MAX_TEAMS or any(not 0 < len(t) <= MAX_TEAM_ID for t in team_ids)
    ):
        raise InvalidRequest(f"'teams' names 1 to {MAX_TEAMS} teams by their ids.", param="teams")
    if share is None and team_ids is None:
        raise InvalidRequest(
            "Say which traffic the game day takes the provider out for: 'share' (of every request), "
            "'teams', or both (a share of those teams' requests).",
            param="share",
        )
    try:
        seconds = parse_duration(duration)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_DURATION:
        raise InvalidRequest(
            '\'duration\' must be a span such as "30m" or "2h", at most 7d.', param="duration"
        )
    if not 0 <= error_rate < 1:
        raise InvalidRequest("'error_rate' must be at least 0 and below 1 (e.g. 0.2).", param="error_rate")
    if not 1 <= min_requests <= 1_000_000:
        raise InvalidRequest("'min_requests' must be from 1 to 1000000.", param="min_requests")
    return {
        "provider": provider,
        "share": share,
        "teams": None if team_ids is None else sorted(set(team_ids)),
        "duration": seconds,
        "error_rate": error_rate,
        "min_requests": min_requests,
    }


class GameDays:
    def __init__(
        self,
        database: Database,
        router: Router,
        audit: AuditLog,
        approvals: Approvals,
        providers: dict[str, str],  # configured: name → kind
        *,
        gated: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.audit = audit
        self.approvals = approvals
        self.providers = providers
        self.gated = gated
        self.clock = clock
        self.drills: dict[str, Drill] = {}  # the active ones, by id (their counts kept across reads)
        self.finished: dict[str, Drill] = {}  # the last LISTED that were, for their counts in a list
        self.router = router
        router.on_rollback = self._tipped
        self.refresher = Periodic(self.refresh, REFRESH_SECONDS, "reading game days")
        self._rollbacks: set[asyncio.Task[None]] = set()
        approvals.register("start_game_day", self._start, "take a provider out of service for some traffic")

    def switch(self, router: Router, providers: dict[str, str]) -> None:
        """A reloaded configuration's router (the game days under way go on in it)."""
        self.router = router
        self.providers = providers
        router.on_rollback = self._tipped
        router.drills = self.router_drills()

    def start(self) -> None:
        self.refresher.start()

    async def aclose(self) -> None:
        await self.refresher.aclose()
        for task in list(self._rollbacks):
            await task

    def router_drills(self) -> tuple[Drill, ...]:
        return tuple(d for d in self.drills.values() if not d.over and d.provider in self.providers)

    # ------------------------------------------------------------------ reading

    async def refresh(self) -> None:
        """Read the active game days into the router; end those whose window has run out."""
        now = self.clock()
        async with self.database.engine.connect() as conn:
            rows = list(await conn.execute(sa.select(game_days).where(game_days.c.state == "active")))
        active: dict[str, Drill] = {}
        for row in rows:
            known = self.drills.get(row.id)
            if known is not None and known.over:  # rolled back here; the database was not told yet
                await self._roll_back(known)
                continue
            if as_utc(row.ends_at).timestamp() <= now:
                await self._finish(row.id, "ended", TURNOUT, "its window ran out", "game_day.end")
                continue
            active[row.id] = known or Drill(
                id=row.id,
                provider=row.provider,
                ends_at=as_utc(row.ends_at).timestamp(),
                error_rate=row.error_rate,
                min_requests=row.min_requests,
                share=row.share,
                teams=frozenset(orjson.loads(row.teams)) if row.teams else frozenset(),
            )
        for gone in self.drills.keys() - active.keys():
            self.finished[gone] = self.drills[gone]
        while len(self.finished) > LISTED:
            del self.finished[next(iter(self.finished))]
        self.drills = active
        self.router.drills = self.router_drills()

    def describe(self, row: Any) -> dict[str, Any]:
        state = row.state
        if state == "active" and as_utc(row.ends_at).timestamp() <= self.clock():
            state = "ended"
        drill = self.drills.get(row.id) or self.finished.get(row.id)
        return {
            "id": row.id,
            "object": "game_day",
            "provider": row.provider,
            "share": row.share,
            "teams": orjson.loads(row.teams) if row.teams else None,
            "error_rate": row.error_rate,
            "min_requests": row.min_requests,
            "starts_at": unix_seconds(row.starts_at),
            "ends_at": unix_seconds(row.ends_at),
            "state": state,
            "created_by": row.created_by,
            "ended_at": unix_seconds(row.ended_at),
            "ended_by": row.ended_by,
            "end_reason": row.end_reason,
            # this instance's view of the traffic it affected
            "affected_requests": 0 if drill is None else drill.requests,
            "failed_requests": 0 if drill is None else drill.failures,
        }

    async def list(self, viewer: Principal) -> list[dict[str, Any]]:
        require_organisation_reader(viewer, "see game days")
        query = sa.select(game_days).order_by(game_days.c.starts_at.desc(), game_days.c.id).limit(LISTED)
        async with self.database.engine.connect() as conn:
            return [self.describe(row) for row in await conn.execute(query)]

    async def get(self, game_day_id: str) -> dict[str, Any]:
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(sa.select(game_days).where(game_days.c.id == game_day_id))).first()
        if row is None:
            raise ResourceNotFound(f"No game day with id '{game_day_id}'.", param="game_day_id")
        return self.describe(row)

    # ------------------------------------------------------------------ changing

    async def propose(
        self, actor: Principal, params: dict[str, Any], request_id: str | None
    ) -> dict[str, Any]:
        """Start a game day (`game_day_params`), or propose it to a second admin when gated."""
        require_organisation_admin(actor, "run game days")
        await self._check(params)
        if self.gated:
            return await self.approvals.propose(
                actor,
                "start_game_day",
                "provider",
                str(params["provider"]),
                team_id=None,
                params=params,
                request_id=request_id,
            )
        return await self._start(actor, params, request_id)

    async def _check(self, params: dict[str, Any]) -> None:
        provider = str(params["provider"])
        if provider not in self.providers:
            raise ResourceNotFound(f"No provider named '{provider}' is configured.", param="provider")
        wanted = params.get("teams") or []
        if wanted:
            async with self.database.engine.connect() as conn:
                query = sa.select(teams.c.id).where(teams.c.id.in_(wanted), teams.c.deleted_at.is_(None))
                found = {row.id for row in await conn.execute(query)}
            missing = sorted(set(wanted) - found)
            if missing:
                raise ResourceNotFound(f"No team with id '{missing[0]}'.", param="teams")

    async def _start(
        self, actor: Principal, params: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        require_organisation_admin(actor, "run game days")
        await self._check(params)
        now = self.clock()
        game_day_id = "gd_" + secrets.token_hex(8)
        chosen = params.get("teams")
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.insert(game_days).values(
                    id=game_day_id,
                    provider=params["provider"],
                    share=params.get("share"),
                    teams=None if not chosen else orjson.dumps(chosen).decode(),
                    error_rate=float(params["error_rate"]),
                    min_requests=int(params["min_requests"]),
                    starts_at=from_unix(now),
                    ends_at=from_unix(now + float(params["duration"])),
                    state="active",
                    created_by=actor.key_id,
                )
            )
            row = (await conn.execute(sa.select(game_days).where(game_days.c.id == game_day_id))).one()
            described = self.describe(row)
            await self.audit.record(
                conn, actor, "game_day.start", "game_day", game_day_id, after=described, request_id=request_id
            )
        await self.refresh()
        return await self.get(game_day_id)

    async def end(self, actor: Principal, game_day_id: str, request_id: str | None) -> dict[str, Any]:
        """End a game day before its window does (one already over is left as it is)."""
        require_organisation_admin(actor, "run game days")
        await self.get(game_day_id)  # 404 for an unknown id
        await self._finish(game_day_id, "ended", actor, "ended by an admin", "game_day.end", request_id)
        await self.refresh()
        return await self.get(game_day_id)

    async def _finish(
        self,
        game_day_id: str,
        state: str,
        actor: Principal,
        reason: str,
        action: str,
        request_id: str | None = None,
    ) -> None:
        """Mark an active game day over (once, whichever instance gets there first), audited."""
        async with self.database.engine.begin() as conn:
            changed = await conn.execute(
                sa.update(game_days)
                .where(game_days.c.id == game_day_id, game_days.c.state == "active")
                .values(
                    state=state,
                    ended_at=dt.datetime.fromtimestamp(self.clock(), dt.UTC),
                    ended_by=actor.key_id,
                    end_reason=reason[:200],
                )
            )
            if changed.rowcount:
                await self.audit.record(
                    conn,
                    actor,
                    action,
                    "game_day",
                    game_day_id,
                    before={"state": "active"},
                    after={"state": state, "reason": reason},
                    request_id=request_id,
                )

    def _tipped(self, drill: Drill) -> None:
        """The router saw a drill's error rate pass its threshold (it stopped applying it): every
        instance is told through the database."""
        self.router.drills = self.router_drills()
        task = asyncio.get_running_loop().create_task(
            self._roll_back(drill), name="turnout: rolling a game day back"
        )
        self._rollbacks.add(task)
        task.add_done_callback(self._rollbacks.discard)

    async def _roll_back(self, drill: Drill) -> None:
        reason = (
            f"rolled back: {drill.failures} of {drill.requests} affected requests failed "
            f"({drill.observed_rate:.0%}, above {drill.error_rate:.0%})"
        )
        try:
            await self._finish(drill.id, "rolled_back", TURNOUT, reason, "game_day.rollback")
        except Exception as error:  # the next read tries again (this instance has stopped already)
            log.warning("could not record game day %s's rollback yet: %s", drill.id, error)
