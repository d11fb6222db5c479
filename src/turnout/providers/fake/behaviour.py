"""What a fake upstream does for one request, read from the model name's directives.

`fake-model?latency=200ms&chunks=20&gap=10ms` answers after 200 ms and streams 20 chunks 10 ms
apart; `...?fail=429&retry_after=2` refuses with 429 and Retry-After; `fail=hang` never answers;
`fail=reset` drops the connection; `fail=truncate&after=3` cuts a stream after 3 chunks;
`fail=malformed&after=3` sends a broken chunk; `fail=error_event` ends a stream with an error
event; `fail_rate=0.3` fails only that share of requests; `reply=...` fixes the answer's text;
`usage=false` leaves usage out. Directives not given fall back to the provider's `fake:` settings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

from turnout.config.settings import FakeSettings
from turnout.config.units import parse_delay

FAILURES = (
    "400",
    "401",
    "403",
    "404",
    "429",
    "500",
    "502",
    "503",
    "529",
    "hang",
    "reset",
    "truncate",
    "malformed",
    "error_event",
)


@dataclass(frozen=True, slots=True)
class Behaviour:
    model: str
    latency: float = 0.0
    chunks: int = 8
    gap: float = 0.0
    fail: str | None = None
    fail_rate: float = 1.0
    after: int = 1
    retry_after: str | None = None
    reply: str | None = None
    usage: bool = True

    def failing(self) -> str | None:
        if self.fail is None or (self.fail_rate < 1.0 and random.random() >= self.fail_rate):  # noqa: S311
            return None
        return self.fail


class BadDirective(ValueError):
    pass


def behaviour_for(model: str, defaults: FakeSettings) -> Behaviour:
    name, _, query = model.partition("?")
    b = Behaviour(model=name, latency=defaults.latency, chunks=defaults.chunks, gap=defaults.chunk_gap)
    for key, value in parse_qsl(query, keep_blank_values=True):
        try:
            b = _apply(b, key, value)
        except ValueError as error:
            raise BadDirective(f"fake directive {key}={value!r}: {error}") from None
    return b


def _apply(b: Behaviour, key: str, value: str) -> Behaviour:
    if key == "latency":
        return replace(b, latency=parse_delay(value))
    if key == "gap":
        return replace(b, gap=parse_delay(value))
    if key == "chunks":
        return replace(b, chunks=_positive(value))
    if key == "after":
        return replace(b, after=int(value) if value.isdigit() else _positive(value))
    if key == "fail":
        if value not in FAILURES:
            raise ValueError(f"expected one of {', '.join(FAILURES)}")
        return replace(b, fail=value)
    if key == "fail_rate":
        rate = float(value)
        if not 0 <= rate <= 1:
            raise ValueError("expected a number between 0 and 1")
        return replace(b, fail_rate=rate)
    if key == "retry_after":
        float(value)
        return replace(b, retry_after=value)
    if key == "reply":
        return replace(b, reply=value)
    if key == "usage":
        return replace(b, usage=value.lower() not in ("0", "false", "no"))
    raise ValueError(
        "unknown directive (known: latency, chunks, gap, fail, fail_rate, after, retry_after, reply, usage)"
    )


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a positive integer")
    return number
