"""The console's spend explorer: spend and customer charge over a span, by team, key, user, model,
alias, deployment, provider or preset, as a day or hour series drawn as stacked bars, with the same
filters as `GET /admin/spend` and a CSV export — read from the spend totals (spend/explorer.py),
within what the signed-in key may read (a team's admin: their team's only)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from typing import Any

from turnout.app import Services
from turnout.console.pages import Visit
from turnout.console.rendering import Renderer
from turnout.console.web import Request, Response
from turnout.domain.pricing import format_usd
from turnout.spend.explorer import DIMENSIONS, Group, spend_over
from turnout.spend.spend_query import spend_query, within_authority

ASKED = ("since", "until", "group_by", "interval", *DIMENSIONS)
Totals = dict[str, int]
SERIES_SHOWN = 8  # the dearest groups drawn apart in the chart; the rest as one "others"
CHART_WIDTH, CHART_HEIGHT = 720, 240


def _asked(request: Request) -> dict[str, str]:
    asked = {name: value for name in ASKED if (value := request.text(name, 256)) is not None}
    asked.setdefault("since", "7d")
    asked.setdefault("group_by", "model")
    asked.setdefault("interval", "day")
    return asked


def chart(groups: list[Group], figure: str) -> dict[str, Any]:
    """Stacked bars, one per bucket, one colour per group (the dearest SERIES_SHOWN, the rest as
    one): rectangles with their coordinates as attributes (the CSP allows no inline style)."""
    totals: dict[tuple[str | None, ...], int] = defaultdict(int)
    for g in groups:
        totals[g.values] += g.figures[figure]
    shown = [values for values, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:SERIES_SHOWN]]
    series = {values: i for i, values in enumerate(shown)}
    buckets: dict[dt.datetime, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for g in groups:
        if g.bucket is not None:
            buckets[g.bucket][series.get(g.values, SERIES_SHOWN)] += g.figures[figure]
    ordered = sorted(buckets)
    peak = max((sum(b.values()) for b in buckets.values()), default=0)
    width = CHART_WIDTH / max(len(ordered), 1)
    bars = []
    for i, bucket in enumerate(ordered):
        y = float(CHART_HEIGHT)
        for index, value in sorted(buckets[bucket].items()):
            height = 0.0 if peak <= 0 else CHART_HEIGHT * value / peak
            y -= height
            bars.append(
                {
                    "x": round(i * width + 1, 2),
                    "y": round(y, 2),
                    "width": round(max(width - 2, 1), 2),
                    "height": round(height, 2),
                    "series": index,
                    "label": f"{bucket:%Y-%m-%d %H:%M} · {_name(shown, index)}: {format_usd(value)}",
                }
            )
    legend = [{"series": i, "name": _name(shown, i)} for i in range(len(shown))]
    if any(series.get(g.values, SERIES_SHOWN) == SERIES_SHOWN for g in groups):
        legend.append({"series": SERIES_SHOWN, "name": "others"})
    return {"bars": bars, "legend": legend, "peak": peak, "buckets": len(ordered)}


def _name(shown: list[tuple[str | None, ...]], index: int) -> str:
    if index >= len(shown):
        return "others"
    return " / ".join(v if v is not None else "(none)" for v in shown[index])


class SpendPages:
    def __init__(self, services: Services, renderer: Renderer) -> None:
        self.s = services
        self.r = renderer

    async def _read(
        self, request: Request, visit: Visit
    ) -> tuple[dict[str, str], Any, list[Group], dict[str, int]]:
        asked = _asked(request)
        query = spend_query(asked, dt.datetime.now(dt.UTC))
        query = type(query)(
            query.since,
            query.until,
            query.group_by,
            within_authority(visit.caller, dict(query.where)),
            query.interval,
        )
        groups, totals = await spend_over(self.s.database, query)
        return asked, query, groups, totals

    async def spend(self, request: Request, visit: Visit) -> Response:
        asked, query, groups, totals = await self._read(request, visit)
        by_group: dict[tuple[str | None, ...], dict[str, int]] = {}
        for g in groups:
            row = by_group.setdefault(g.values, defaultdict(int))
            for name in ("requests", "input_tokens", "output_tokens", "cost_micros", "customer_price_micros"):
                row[name] += g.figures[name]
        rows = sorted(by_group.items(), key=lambda kv: -kv[1]["cost_micros"])
        return self.r.page(
            "spend.html",
            caller=visit.caller,
            csrf=visit.csrf,
            asked=asked,
            dimensions=DIMENSIONS,
            group_by=query.group_by,
            rows=[(" / ".join(v or "(none)" for v in values), figures) for values, figures in rows],
            totals=totals,
            cost=chart(groups, "cost_micros"),
            charged=chart(groups, "customer_price_micros"),
            since=query.since,
            until=query.until,
        )

    async def spend_csv(self, request: Request, visit: Visit) -> Response:
        _, query, groups, _ = await self._read(request, visit)
        out = io.StringIO()
        writer = csv.writer(out)
        figures = ("requests", "input_tokens", "output_tokens", "cost_micros", "customer_price_micros")
        writer.writerow(["bucket", *query.group_by, *figures, "cost_usd", "charged_usd"])
        for g in groups:
            bucket = "" if g.bucket is None else g.bucket.isoformat()
            values = [v if v is not None else "" for v in g.values]
            money = (format_usd(g.figures["cost_micros"]), format_usd(g.figures["customer_price_micros"]))
            writer.writerow([bucket, *values, *(g.figures[f] for f in figures), *money])
        disposition = b'attachment; filename="turnout-spend.csv"'
        return Response(
            200, out.getvalue().encode(), b"text/csv; charset=utf-8", [(b"content-disposition", disposition)]
        )
