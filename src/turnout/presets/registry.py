"""The presets this instance serves, in memory (read from the database on start, kept current
by the admin API here and by a refresh every `REFRESH_SECONDS` for changes made elsewhere).

A preset is a model alias with a system prompt and default parameters. A request for
`preset/<name>` becomes a request for the alias: the preset's system prompt goes first, its
parameters fill in what the caller did not set (the caller's own win), and the model is the
preset's alias, which the caller may use through the preset even where their key does not list it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.domain.billing import RevenueShare
from turnout.domain.steering_fields import steers
from turnout.periodic import Periodic
from turnout.storage.database import Database
from turnout.storage.tables import presets

PREFIX = "preset/"
REFRESH_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    team_id: str
    alias: str
    system_prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    share: RevenueShare = field(default_factory=lambda: RevenueShare(Decimal(0)))

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The caller's request as a request for the preset's alias."""
        out = {**self.params, **body, "model": self.alias}
        if self.system_prompt:
            messages = body.get("messages")
            out["messages"] = [{"role": "system", "content": self.system_prompt}] + (
                messages if isinstance(messages, list) else []
            )
        return out


def preset_of(row: Any) -> Preset:
    """A stored preset, without any parameter that would steer the upstream (refused when a preset
    is published; one stored before that was refused is never sent on)."""
    params = orjson.loads(row.params) if row.params else {}
    return Preset(
        name=row.name,
        team_id=row.team_id,
        alias=row.alias,
        system_prompt=row.system_prompt,
        params={k: v for k, v in params.items() if not steers(k)},
        share=RevenueShare(Decimal(row.revenue_share), row.share_cap_micros),
    )


class PresetRegistry:
    def __init__(self) -> None:
        self.presets: dict[str, Preset] = {}
        self.database: Database | None = None
        self.refresher = Periodic(self.refresh, REFRESH_SECONDS, "reading presets")

    def get(self, model: str) -> Preset | None:
        """The preset `model` names (`preset/<name>`), if there is one."""
        return self.presets.get(model[len(PREFIX) :]) if model.startswith(PREFIX) else None

    async def load(self, database: Database) -> None:
        self.database = database
        await self.refresh()

    async def refresh(self) -> None:
        assert self.database is not None
        query = sa.select(presets).where(presets.c.deleted_at.is_(None))
        async with self.database.engine.connect() as conn:
            self.presets = {row.name: preset_of(row) for row in await conn.execute(query)}

    def start(self) -> None:
        self.refresher.start()

    async def aclose(self) -> None:
        await self.refresher.aclose()
