"""The console's pages: Jinja2 templates shipped in the package, every value escaped (autoescape
on for every template, undefined names an error), and the filters they format values with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
import orjson

from turnout.console.web import Response


def _time(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def usd(micros: int | None) -> str:
    """Dollars and cents; an amount finer than a cent to the micro-dollar ($0.004, not $0.00)."""
    if micros is None:
        return "—"
    sign, amount = "-" if micros < 0 else "", abs(micros)
    if amount % 10_000 == 0:
        return f"{sign}${amount / 1_000_000:,.2f}"
    whole, part = divmod(amount, 1_000_000)
    return f"{sign}${whole:,}.{f'{part:06d}'.rstrip('0')}"


def _json(value: Any) -> str:
    """A value as indented JSON text (escaped by the template like any other text)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("turnout.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = _time
    env.filters["usd"] = usd
    env.filters["json"] = _json
    return env


class Renderer:
    def __init__(self, root: str) -> None:
        self.env = environment()
        self.root = root  # the console's path: every link is built from it

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        html = self.env.get_template(template).render(root=self.root, **context)
        return Response(status, html.encode())
