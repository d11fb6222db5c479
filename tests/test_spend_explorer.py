"""The spend API's figures, on SQLite and PostgreSQL: for any span, any dimensions grouped by and
filtered on, totals or an hour/day series, they equal what the ledger's rows sum to (computed here
in Python from the rows written), requests counted once per group even when a request's attempts
went to several models, deployments and providers; and the totals by every dimension that the
ledger writer adds batch by batch equal what the migration's backfill computes from the rows."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.explorer import FIGURES, SpendQuery, spend_over
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.cube import CUBE_DIMS, backfill_cube
from turnout.storage.database import Database
from turnout.storage.rollups import floor_to
from turnout.storage.tables import spend_cube

from support.databases import opened_database
from support.totals import NOW, insert_in_batches, requests_over

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
PROVIDER = {"east": "openai", "west": "azure"}


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


def workload() -> list[list[LedgerEntry]]:
    """The shared test ledger, with providers; a request's preset is its own (every row's, as
    the pipeline writes them)."""
    return [
        [
            msgspec.structs.replace(
                e,
                provider=PROVIDER.get(e.deployment or ""),
                preset=rows[-1].preset,
                preset_team_id=rows[-1].preset_team_id,
            )
            for e in rows
        ]
        for rows in requests_over(3, 500)
    ]


def expected(requests: list[list[LedgerEntry]], q: SpendQuery) -> dict[Any, dict[str, int]]:
    """The figures summed from the rows, in Python."""
    groups: dict[Any, dict[str, Any]] = {}
    since, until = q.since.timestamp(), q.until.timestamp()
    for rows in requests:
        for e in rows:
            if not since <= e.at < until:
                continue
            if any(getattr(e, CUBE_DIMS[d]) != v for d, v in q.where.items()):
                continue
            values = tuple(getattr(e, CUBE_DIMS[d]) or None for d in q.group_by)
            bucket = None
            if q.interval is not None:
                bucket = floor_to(dt.datetime.fromtimestamp(e.at, dt.UTC), q.interval)
            g = groups.setdefault((values, bucket), {"ids": set(), "ok": set(), **dict.fromkeys(FIGURES, 0)})
            g["ids"].add(e.request_id)
            if e.status < 400:
                g["ok"].add(e.request_id)
            g["attempts"] += 1
            for f in FIGURES[3:11]:
                g[f] += getattr(e, f) or 0
            g["cost_unknown"] += e.cost_micros is None
            g["estimated"] += e.estimated
    out = {}
    for key, g in groups.items():
        g["requests"] = len(g["ids"])
        g["failed"] = len(g["ids"] - g["ok"])
        out[key] = {f: g[f] for f in FIGURES}
    return out


QUERIES: list[tuple[tuple[str, ...], dict[str, str]]] = [
    ((), {}),
    (("model",), {}),
    (("provider",), {}),
    (("team", "model"), {}),
    (("alias",), {"team": "red"}),
    (("deployment", "provider"), {"key": "k1"}),
    (("key", "user"), {"model": "gpt"}),
    ((), {"provider": "azure"}),
    (("team",), {"deployment": "east", "model": "claude"}),
    (("preset", "model", "deployment", "provider"), {}),
]


async def test_every_query_equals_what_the_rows_sum_to(database: Database) -> None:
    requests = workload()
    await insert_in_batches(LedgerStore(database), requests)
    rng = random.Random(5)
    spans = [(NOW - dt.timedelta(days=4), NOW + dt.timedelta(hours=1))]
    spans.append((floor_to(NOW, "day") - dt.timedelta(days=2), floor_to(NOW, "hour")))  # whole buckets
    for _ in range(4):
        start = NOW - dt.timedelta(seconds=rng.random() * 3 * 86400)
        spans.append((start, start + dt.timedelta(seconds=3600 + rng.random() * 86400)))
    checked = 0
    for since, until in spans:
        for group_by, where in QUERIES:
            for interval in (None, "hour", "day"):
                q = SpendQuery(since, until, group_by, where, interval)
                groups, totals = await spend_over(database, q)
                got = {(g.values, g.bucket): g.figures for g in groups}
                want = expected(requests, q)
                assert got == want, (group_by, where, interval, since, until)
                whole = expected(requests, SpendQuery(since, until, (), where, None))
                assert totals == next(iter(whole.values()), dict.fromkeys(FIGURES, 0))
                checked += len(got)
    assert checked > 2000


async def test_a_request_failing_over_is_one_request_per_group(database: Database) -> None:
    """Attempt 1 on east (502), attempt 2 on west (200), same model: one request by model, two by
    deployment (one failed there), one by provider each."""
    at = (NOW - dt.timedelta(hours=3)).timestamp()
    common: dict[str, Any] = {"request_id": "r1", "at": at, "api": "chat", "key_id": "k1", "attempts": 2}
    rows = [
        LedgerEntry(attempt=1, deployment="east", provider="openai", model="gpt", status=502, **common),
        LedgerEntry(attempt=2, deployment="west", provider="azure", model="gpt", cost_micros=5, **common),
    ]
    await LedgerStore(database).insert(rows)
    span = (NOW - dt.timedelta(days=1), NOW)
    by_model, _ = await spend_over(database, SpendQuery(*span, ("model",), {"key": "k1"}))
    assert [
        (g.values, g.figures["requests"], g.figures["attempts"], g.figures["failed"]) for g in by_model
    ] == [(("gpt",), 1, 2, 0)]
    by_deployment, totals = await spend_over(database, SpendQuery(*span, ("deployment",), {"model": "gpt"}))
    assert {g.values[0]: (g.figures["requests"], g.figures["failed"]) for g in by_deployment} == {
        "east": (1, 1),
        "west": (1, 0),
    }
    assert (totals["requests"], totals["attempts"], totals["failed"], totals["cost_micros"]) == (1, 2, 0, 5)


async def test_the_writers_cells_equal_the_migrations_backfill(database: Database) -> None:
    await insert_in_batches(LedgerStore(database), workload())
    order = spend_cube.primary_key.columns
    async with database.engine.connect() as conn:
        written = [tuple(r) for r in await conn.execute(sa.select(spend_cube).order_by(*order))]
    async with database.engine.begin() as conn:
        await conn.execute(spend_cube.delete())
        await conn.run_sync(backfill_cube)
    async with database.engine.connect() as conn:
        computed = [tuple(r) for r in await conn.execute(sa.select(spend_cube).order_by(*order))]
    assert written == computed
    assert len(written) > 500
