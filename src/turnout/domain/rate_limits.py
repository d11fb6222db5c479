"""Rate limits as values: requests per minute and per day, tokens per minute and requests at once,
for a key, a team, a user, an alias or a deployment; the refusal they give (429
`rate_limit_exceeded` naming the limit) and what the answers tell a client about them (OpenAI's
`x-ratelimit-*`, Anthropic's `anthropic-ratelimit-*`). Pure: the counting is in `limits/`."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from turnout.domain.errors import ClientError, InvalidRequest, PermissionDenied

Measure = Literal["rpm", "tpm", "rpd", "parallel"]
MEASURES: tuple[Measure, ...] = ("rpm", "tpm", "rpd", "parallel")
LimitScope = Literal["key", "team", "user", "alias", "deployment"]
MAX_LIMIT = 10**12

MINUTE = 60.0
DAY = 86_400.0
WINDOWS: dict[Measure, float] = {"rpm": MINUTE, "tpm": MINUTE, "rpd": DAY}
SLICES: dict[Measure, int] = {"rpm": 60, "tpm": 60, "rpd": 1440}  # a window's slices (sliding)


class RateLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Each None: no limit of that kind."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    parallel: int | None = None

    def get(self, measure: Measure) -> int | None:
        value: int | None = getattr(self, measure)
        return value

    @property
    def empty(self) -> bool:
        return self.rpm is None and self.tpm is None and self.rpd is None and self.parallel is None

    def stored(self) -> dict[str, int] | None:
        """As the database and the admin API hold it (None: no limit at all)."""
        shown: dict[str, int] = msgspec.to_builtins(self)
        return shown or None

    def within(self, ceiling: RateLimits) -> Measure | None:
        """The first measure in which these limits are looser than `ceiling`'s (a measure the
        ceiling limits must be limited here too, no higher), or None."""
        for measure in MEASURES:
            bound = ceiling.get(measure)
            own = self.get(measure)
            if bound is not None and (own is None or own > bound):
                return measure
        return None

    def under(self, ceiling: RateLimits) -> RateLimits:
        """These limits, with every measure the ceiling limits and these do not filled in."""
        values = {m: self.get(m) if self.get(m) is not None else ceiling.get(m) for m in MEASURES}
        return RateLimits(**values)


NO_LIMITS = RateLimits()


def parse_limits(value: Any, param: str) -> RateLimits | None:
    """Limits from an admin body or a stored JSON object: positive integers by name (None or {}:
    no limits). InvalidRequest naming the field otherwise."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be an object such as {{\"rpm\": 60}}.", param=param)
    for name, number in value.items():
        if name not in MEASURES:
            raise InvalidRequest(
                f"'{param}.{name}' is not a limit (known: {', '.join(MEASURES)}).", param=f"{param}.{name}"
            )
        if number is not None and (type(number) is not int or not 1 <= number <= MAX_LIMIT):
            raise InvalidRequest(
                f"'{param}.{name}' must be a whole number from 1 to {MAX_LIMIT} (or null: no limit).",
                param=f"{param}.{name}",
            )
    limits = RateLimits(**{k: v for k, v in value.items() if v is not None})
    return None if limits.empty else limits


_DECODE = msgspec.json.Decoder(RateLimits)


def stored_limits(text: str | bytes | None) -> RateLimits | None:
    """Limits as the database holds them (JSON; None or {}: none)."""
    if not text:
        return None
    limits = _DECODE.decode(text)
    return None if limits.empty else limits


def check_within(limits: RateLimits | None, ceiling: RateLimits | None, whose: str, param: str) -> None:
    """PermissionDenied unless `limits` are no looser than `ceiling` (`whose`: whose ceiling)."""
    if ceiling is None or ceiling.empty:
        return
    looser = (limits or NO_LIMITS).within(ceiling)
    if looser is not None:
        raise PermissionDenied(
            f"A key's {looser} limit cannot be looser than {whose} ({looser} {ceiling.get(looser)}).",
            param=f"{param}.{looser}",
            code="limit_above_issuer",
        )


LABELS: dict[Measure, str] = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "rpd": "requests per day",
    "parallel": "requests at once",
}


class RateLimited(ClientError):
    """A limit of turnout's own refused the request before any provider was asked (429
    `rate_limit_exceeded`, with Retry-After); `limit` names it: "key rpm", "team tpm"..."""

    status = 429
    code = "rate_limit_exceeded"
    refused_by = "rate_limit"  # (turnout_refusals_total)

    def __init__(
        self, scope: LimitScope, measure: Measure, limit: int, retry_after: float, detail: str = ""
    ) -> None:
        self.scope = scope
        self.measure = measure
        self.limit = limit
        self.retry_after = max(1, math.ceil(retry_after))
        self.error_type = "tokens" if measure == "tpm" else "requests"  # as OpenAI types them
        named = f"{scope} {measure}"
        super().__init__(
            f"Rate limit reached: {named} ({LABELS[measure]}) is {limit}{detail}. "
            f"Try again in {self.retry_after}s."
        )
        self.quota: Quota | None = None  # the remaining counts, for the headers
        # a `parallel` refusal decided in Redis: another instance may have given a place back that
        # has not reached Redis yet, so it is worth asking once more (pipeline: PLACE_RECHECK)
        self.recheck = False

    @property
    def named(self) -> str:
        return f"{self.scope} {self.measure}"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())]

    def details(self) -> dict[str, object] | None:
        return None


@dataclass(slots=True)
class Quota:
    """The tightest request limit and token limit a request was admitted (or refused) under:
    what its answer's rate-limit headers show. Each None where no such limit applies; resets in
    seconds from `at` (unix seconds)."""

    at: float
    requests_limit: int | None = None
    requests_remaining: int = 0
    requests_reset: float = 0.0
    tokens_limit: int | None = None
    tokens_remaining: int = 0
    tokens_reset: float = 0.0

    def note_requests(self, limit: int, remaining: int, reset: float) -> None:
        if self.requests_limit is None or remaining < self.requests_remaining:
            self.requests_limit, self.requests_remaining, self.requests_reset = (
                limit,
                max(remaining, 0),
                reset,
            )

    def note_tokens(self, limit: int, remaining: int, reset: float) -> None:
        if self.tokens_limit is None or remaining < self.tokens_remaining:
            self.tokens_limit, self.tokens_remaining, self.tokens_reset = limit, max(remaining, 0), reset

    @property
    def empty(self) -> bool:
        return self.requests_limit is None and self.tokens_limit is None

    def openai_headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's names and forms: a count, and the time to reset as a duration ("6m0s", "1s")."""
        out: list[tuple[bytes, bytes]] = []
        if self.requests_limit is not None:
            out += [
                (b"x-ratelimit-limit-requests", b"%d" % self.requests_limit),
                (b"x-ratelimit-remaining-requests", b"%d" % self.requests_remaining),
                (b"x-ratelimit-reset-requests", duration(self.requests_reset).encode()),
            ]
        if self.tokens_limit is not None:
            out += [
                (b"x-ratelimit-limit-tokens", b"%d" % self.tokens_limit),
                (b"x-ratelimit-remaining-tokens", b"%d" % self.tokens_remaining),
                (b"x-ratelimit-reset-tokens", duration(self.tokens_reset).encode()),
            ]
        return out

    def anthropic_headers(self) -> list[tuple[bytes, bytes]]:
        """Anthropic's names and forms: a count, and the instant of the reset in RFC 3339."""
        out: list[tuple[bytes, bytes]] = []
        if self.requests_limit is not None:
            out += [
                (b"anthropic-ratelimit-requests-limit", b"%d" % self.requests_limit),
                (b"anthropic-ratelimit-requests-remaining", b"%d" % self.requests_remaining),
                (b"anthropic-ratelimit-requests-reset", self._instant(self.requests_reset)),
            ]
        if self.tokens_limit is not None:
            out += [
                (b"anthropic-ratelimit-tokens-limit", b"%d" % self.tokens_limit),
                (b"anthropic-ratelimit-tokens-remaining", b"%d" % self.tokens_remaining),
                (b"anthropic-ratelimit-tokens-reset", self._instant(self.tokens_reset)),
            ]
        return out

    def _instant(self, seconds: float) -> bytes:
        at = dt.datetime.fromtimestamp(math.ceil(self.at + seconds), dt.UTC)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ").encode()


def duration(seconds: float) -> str:
    """OpenAI's form of a reset: "1s", "6m0s", "1h2m3s" (whole seconds, at least "0s")."""
    whole = max(0, math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
