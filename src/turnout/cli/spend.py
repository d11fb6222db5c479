"""`turnout spend report`: what was spent, grouped by team, key, user, model, alias, deployment,
provider or preset, as a table or CSV: asked of a running gateway's `GET /admin/spend` (within
what the key may read), or with `--config`, read from the configured database directly."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from turnout.cli.keys import call_all
from turnout.config.settings import Settings
from turnout.domain.pricing import format_usd
from turnout.spend.report import spend_report
from turnout.storage.database import Database

MONEY = ("cost_micros", "customer_price_micros")
COLUMNS = (
    ("group", "{by}"),
    ("requests", "requests"),
    ("failed", "failed"),
    ("input_tokens", "input tokens"),
    ("cached_input_tokens", "cached"),
    ("output_tokens", "output tokens"),
    ("search_units", "search units"),  # a reranker's searches
    ("images", "images"),  # images generated
    ("audio_seconds", "audio seconds"),  # seconds of audio transcribed
    ("characters", "characters"),  # characters read aloud
    ("cost_micros", "cost USD"),
    ("customer_price_micros", "charged USD"),
    ("cost_unknown", "unpriced"),
    ("estimated", "estimated"),
)


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """An ISO date or time (UTC unless it says otherwise), or a span back from now: 7d, 24h, 30m."""
    now = now or datetime.now(UTC)
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value and value[-1] in units and value[:-1].isdigit():
        return now - timedelta(**{units[value[-1]]: int(value[:-1])})
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def render(rows: list[dict[str, Any]], by: str, fmt: str) -> str:
    headers = [title.format(by=by) for _, title in COLUMNS]
    cells = [
        [
            format_usd(row[key]) if key in MONEY else ("(none)" if row[key] is None else str(row[key]))
            for key, _ in COLUMNS
        ]
        for row in rows
    ]
    if rows:
        total = {key: sum(r[key] for r in rows) for key, _ in COLUMNS[1:]}
        cells.append(
            [
                "total",
                *(format_usd(total[k]) if k in MONEY else str(total[k]) for k, _ in COLUMNS[1:]),
            ]
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(headers)
        writer.writerows(cells)
        return out.getvalue()
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    ]
    lines += [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    return "\n".join(lines) + ("\n" if rows else "\n(no requests in this period)\n")


def _cell(key: str, value: Any) -> str:
    if key == "cost_micros":
        return format_usd(value)
    return "(none)" if value is None else str(value)


def _line(cells: list[str], widths: list[int]) -> str:
    """The first column left-aligned, numbers right-aligned."""
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


REPORT_DEADLINE = 300.0  # seconds a report's queries may take (a serving gateway's are bounded by far less)


def run(settings: Settings, by: str, since: datetime, until: datetime | None, fmt: str) -> str:
    async def report() -> list[dict[str, Any]]:
        database = await Database.open(settings.storage.database_url, REPORT_DEADLINE)
        try:
            return await spend_report(database, by, since, until)
        finally:
            await database.close()

    return render(asyncio.run(report()), by, fmt)


def run_remote(url: str, key: str, by: str, since: datetime, until: datetime | None, fmt: str) -> str:
    """The report from a gateway's GET /admin/spend, every page of it."""
    query = {"group_by": by, "since": repr(since.timestamp())}
    if until is not None:
        query["until"] = repr(until.timestamp())
    items = call_all(url, key, "/admin/spend", query)
    rows = [{**item, "group": item["group"][by]} for item in items]
    return render(rows, by, fmt)
