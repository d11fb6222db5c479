"""The console's landing page: requests, error rate, tokens and money today and this month, with
plots over the last hour, day or 30 days (from the running totals: spend/traffic.py); for readers
of the whole organisation also latency and time to first token (this instance's request metrics)
and provider health (breaker states, failovers by cause). Nothing here reads the ledger's rows."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from turnout.app import Services
from turnout.console.charts import Layer, stacked_bars
from turnout.console.pages import Visit
from turnout.console.rendering import Renderer, usd
from turnout.console.web import Request, Response
from turnout.domain.errors import InvalidRequest
from turnout.domain.key_policy import may_read
from turnout.observability.metrics import RequestMetrics
from turnout.observability.percentiles import merged, quantile
from turnout.spend.traffic import WINDOWS, Point, traffic

LABELS = {"quarter": "%Y-%m-%d %H:%M", "hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d"}
REQUESTS = (
    Layer("answered", 0, lambda f: f["requests"] - f["failed"]),
    Layer("failed", 3, lambda f: f["failed"]),
)
TOKENS = (Layer("input", 0, lambda f: f["input_tokens"]), Layer("output", 1, lambda f: f["output_tokens"]))
MONEY = (Layer("cost", 0, lambda f: f["cost_micros"]),)
CHARGED = (Layer("charged", 2, lambda f: f["customer_price_micros"]),)


def _error_rate(point: Point) -> str:
    requests = point.figures["requests"]
    return "—" if not requests else f"{100 * point.figures['failed'] / requests:.1f}%"


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.0f} ms"


def latency(metrics: RequestMetrics | None) -> dict[str, str] | None:
    """p50/p95 of request duration and of a stream's time to first token (None: metrics off)."""
    if metrics is None:
        return None
    durations, first = merged(metrics.durations.values()), merged(metrics.first_tokens.values())
    return {
        "requests": str(sum(durations.counts)),
        "p50": _ms(quantile(durations, 0.5)),
        "p95": _ms(quantile(durations, 0.95)),
        "ttft_p50": _ms(quantile(first, 0.5)),
        "ttft_p95": _ms(quantile(first, 0.95)),
    }


def failovers(metrics: RequestMetrics | None) -> list[dict[str, Any]]:
    """Failed attempts another attempt followed, by provider and cause, most first."""
    if metrics is None:
        return []
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for (_, _, provider, cause), count in metrics.failovers.items():
        counts[(provider or "(none)", cause)] += count[0]
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"provider": p, "cause": c, "count": n} for (p, c), n in ordered]


class OverviewPages:
    def __init__(
        self, services: Services, renderer: Renderer, deployments: Callable[[], list[dict[str, object]]]
    ) -> None:
        self.s = services
        self.r = renderer
        self.deployments = deployments

    async def overview(self, request: Request, visit: Visit) -> Response:
        window = request.text("window", 16) or "day"
        if window not in WINDOWS:
            raise InvalidRequest(f"'window' must be one of {', '.join(WINDOWS)}.", param="window")
        caller = visit.caller
        everything = may_read(caller, None)  # the whole organisation's figures, or one team's
        team_id = None if everything else caller.team_id
        if not everything and team_id is None:
            raise InvalidRequest("This key belongs to no team and cannot read the organisation's figures.")
        figures = await traffic(self.s.database, team_id, dt.datetime.now(dt.UTC))
        grain = WINDOWS[window][0]
        buckets = [(p.bucket.strftime(LABELS[grain]) + " UTC", p.figures) for p in figures.series[window]]
        window_total = Point(figures.series[window][0].bucket)
        for point in figures.series[window]:
            window_total.add(point.figures)
        return self.r.page(
            "overview.html",
            caller=caller,
            csrf=visit.csrf,
            window=window,
            windows=tuple(WINDOWS),
            team_id=team_id,
            today=figures.today.figures,
            month=figures.month.figures,
            today_error_rate=_error_rate(figures.today),
            month_error_rate=_error_rate(figures.month),
            window_error_rate=_error_rate(window_total),
            charts=[
                ("Requests", stacked_bars(buckets, REQUESTS)),
                ("Tokens", stacked_bars(buckets, TOKENS)),
                ("Cost", stacked_bars(buckets, MONEY, usd)),
                ("Charged to customers", stacked_bars(buckets, CHARGED, usd)),
            ],
            latency=latency(self.s.metrics) if everything else None,
            failovers=failovers(self.s.metrics) if everything else [],
            deployments=self.deployments() if everything else [],
            organisation=everything,
        )
