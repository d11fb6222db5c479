"""The requests a rehearsal replays: chat requests the request log kept (answered, not cut to
size) that an alias was asked for, or that a provider's deployments answered, in a period; a
random sample of them; and, for each, what the client got (the logged answer and latency, the
ledger's tokens and cost)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.tables import ledger, request_logs

APIS = ("chat", "messages", "responses")  # logged as OpenAI chat requests (embeddings are not chat)
MAX_SAMPLE = 100_000
FETCH = 200  # logged entries read per query


@dataclass(frozen=True, slots=True)
class Logged:
    """One logged request and what the client got for it."""

    request_id: str
    at: float
    alias: str
    deployment: str | None
    request: dict[str, Any]
    answer: Any  # the logged answer (a chat.completion, or the upstream's own format)
    latency_ms: int
    input_tokens: int | None  # from the ledger (None: no ledger entry)
    output_tokens: int | None
    cost_micros: int | None


def _when(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _matching(source: str, deployments: Collection[str], since: float, until: float) -> list[Any]:
    c = request_logs.c
    who = c.alias == source
    if deployments:
        who = sa.or_(who, c.deployment.in_(sorted(deployments)))
    return [
        who,
        c.at >= _when(since),
        c.at < _when(until),
        c.status == 200,
        c.truncated.is_(False),
        c.api.in_(APIS),
    ]


async def sample(
    database: Database, source: str, deployments: Collection[str], since: float, until: float, size: int
) -> list[str]:
    """The ids of up to `size` matching logged requests, chosen at random, oldest first."""
    c = request_logs.c
    chosen = (
        sa.select(c.request_id, c.at)
        .where(*_matching(source, deployments, since, until))
        .order_by(sa.func.random())
        .limit(min(size, MAX_SAMPLE))
        .subquery()
    )
    query = sa.select(chosen.c.request_id).order_by(chosen.c.at, chosen.c.request_id)
    async with database.engine.connect() as conn:
        return [row.request_id for row in await conn.execute(query)]


def _document(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


async def read(database: Database, ids: list[str]) -> list[Logged]:
    """The logged requests with these ids (those still there: retention may have removed some)."""
    found: list[Logged] = []
    for start in range(0, len(ids), FETCH):
        chunk = ids[start : start + FETCH]
        async with database.engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(request_logs).where(request_logs.c.request_id.in_(chunk)))
            ).all()
            spent = (
                await conn.execute(
                    sa.select(
                        ledger.c.request_id,
                        ledger.c.input_tokens,
                        ledger.c.output_tokens,
                        ledger.c.cost_micros,
                    ).where(ledger.c.request_id.in_(chunk), ledger.c.status == 200)
                )
            ).all()
        costs = {r.request_id: r for r in spent}
        for row in rows:
            request = _document(row.request)
            if not isinstance(request, dict):
                continue
            cost = costs.get(row.request_id)
            found.append(
                Logged(
                    request_id=row.request_id,
                    at=row.at.replace(tzinfo=row.at.tzinfo or dt.UTC).timestamp(),
                    alias=row.alias,
                    deployment=row.deployment,
                    request=request,
                    answer=_document(row.response),
                    latency_ms=row.latency_ms,
                    input_tokens=None if cost is None else cost.input_tokens,
                    output_tokens=None if cost is None else cost.output_tokens,
                    cost_micros=None if cost is None else cost.cost_micros,
                )
            )
    order = {i: n for n, i in enumerate(ids)}
    return sorted(found, key=lambda logged: order[logged.request_id])
