"""What requests did, as Prometheus counts: fed once per finished request from its ledger entries
(the spend recorder hands them over as it journals them), and rendered only when scraped.

The hot path does plain dictionary and integer arithmetic (one event loop: no lock); label sets
are tuples looked up once per request, and exposition builds prometheus_client metric families
from them at scrape time. Labels never name keys or users; a team label is opt-in. A label set
past `MAX_SERIES` per metric is folded into deployment `other`, so wildcard aliases (deployments
named by clients) cannot grow a scrape without bound.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from turnout.domain.ledger_entry import LedgerEntry

# Seconds: from a cached answer's millisecond to a long reasoning model's two minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
MAX_SERIES = 2000  # label sets kept per metric; later ones are counted under deployment "other"
OTHER = "other"
CONFIGURED = 1 << 62  # no cap: label sets of aliases and APIs only (the configuration bounds them)
MICROS = 1_000_000
STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
# The reasons a failed attempt may be labelled with (the error tree's codes); anything else an
# upstream named is "other", so that a provider cannot add label values.
CAUSES = frozenset(
    {
        "upstream_server_error",
        "upstream_unavailable",
        "upstream_timeout",
        "upstream_connection_error",
        "bad_upstream_response",
        "upstream_auth_error",
        "upstream_answer_cut",
        "no_upstream_available",
        "context_length_exceeded",
        "internal_error",
    }
)
# Attempts that ended so without failing: a hedge's loser (cancelled when the other answered) or
# one the gateway's shutdown cut short. Not failovers.
NOT_FAILED = frozenset({"client_closed", "gateway_shutdown"})
RATE_LIMITED = "rate_limited"  # a provider's 429, whatever code it gave
# The ledger's token kinds, in the order `_Spend` keeps them.
TOKEN_KINDS = ("input", "output", "cached_input", "cache_write", "reasoning")


class Histogram:
    """Counts per bucket (not cumulative: made so at exposition) and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*(repr(b) for b in BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def _status_class(status: int) -> str:
    return STATUS_CLASSES.get(status // 100, "other")


Labels = tuple[str, ...]
T = TypeVar("T")


def _fold_deployment(key: Labels) -> Labels:
    """The label set with its deployment (always the second label) as `other`."""
    return (key[0], OTHER, *key[2:])


def _cell(table: dict[Labels, T], key: Labels, fresh: Callable[[], T], limit: int = MAX_SERIES) -> T:
    """`table[key]`, made on first use (past `limit` label sets, under deployment `other`)."""
    found = table.get(key)
    if found is None:
        if len(table) >= limit:
            key = _fold_deployment(key)
            found = table.get(key)
        if found is None:
            found = table[key] = fresh()
    return found


def _no_spend() -> list[int]:
    return [0] * 9


def _zero() -> list[int]:
    return [0]


def _spend(spent: list[int], entry: LedgerEntry) -> None:
    spent[0] += entry.input_tokens
    spent[1] += entry.output_tokens
    spent[2] += entry.cached_input_tokens
    spent[3] += entry.cache_write_tokens
    spent[4] += entry.reasoning_tokens
    cost = entry.cost_micros
    if cost is None:
        spent[7] += 1
    else:
        spent[5] += cost
    charge = entry.customer_price_micros
    if charge is not None:
        spent[6] += charge
    spent[8] += entry.search_units


class _Bundle:
    """The cells one kind of single-attempt request adds to, found with one lookup."""

    __slots__ = ("attempts", "duration", "first_token", "first_token_labels", "requests", "spend")

    def __init__(
        self,
        requests: list[int],
        attempts: list[int],
        duration: Histogram,
        spend: list[int],
        first_token_labels: Labels,
    ) -> None:
        self.requests = requests
        self.attempts = attempts
        self.duration = duration
        self.spend = spend
        self.first_token: Histogram | None = None  # made with a stream's first observation
        self.first_token_labels = first_token_labels


class RequestMetrics:
    """The counts of every request the ledger recorded (and of those refused before it)."""

    def __init__(self, team_label: bool = False, max_series: int = MAX_SERIES) -> None:
        self.team_label = team_label
        self.max_series = max_series
        # (alias, deployment, provider, api, stream, status class[, team]) → requests
        self.requests: dict[Labels, list[int]] = {}
        # (alias, api, stream) → seconds from arrival to the answer's end
        self.durations: dict[Labels, Histogram] = {}
        # (alias, deployment, provider) → seconds from arrival to a stream's first token
        self.first_tokens: dict[Labels, Histogram] = {}
        # (alias, deployment, provider, status class) → upstream attempts
        self.attempts: dict[Labels, list[int]] = {}
        # (alias, deployment, provider, cause) → failed attempts another attempt followed
        self.failovers: dict[Labels, list[int]] = {}
        # (alias, deployment, provider[, team]) → [tokens by TOKEN_KINDS..., cost µ$, charge µ$, unpriced,
        # search units]
        self.spend: dict[Labels, list[int]] = {}
        self.refusals: dict[str, int] = {}
        # (alias, deployment, outcome) → a mirror's shadow requests (outcome: answered, failed,
        # timeout, cut_short, or not sent: busy, budget, unsupported, out_of_service)
        self.shadows: dict[Labels, list[int]] = {}
        # (alias, deployment) → what they cost, micro-dollars (rehearsal spend)
        self.shadow_spend: dict[Labels, list[int]] = {}
        # the common request (one attempt, which answered): its cells by what labels them
        self._bundles: dict[tuple[object, ...], _Bundle] = {}

    # ------------------------------------------------------------------ fed by the recorder

    def request(
        self,
        entries: Sequence[LedgerEntry],
        status: int,
        served: int,
        elapsed: float,
        first_token: float | None,
    ) -> None:
        """A request ended with `status` after `elapsed` seconds, its entries one per attempt
        (`served`: the number of the attempt that answered, 0 for none); `first_token`: seconds to
        a stream's first token."""
        if served == 1 and len(entries) == 1:
            entry = entries[0]
            team_id = entry.team_id if self.team_label else None
            key = (
                entry.alias,
                entry.deployment,
                entry.provider,
                entry.api,
                entry.stream,
                status,
                entry.status,
            )
            bundle = self._bundles.get(key if team_id is None else (*key, team_id))
            if bundle is None:
                bundle = self._bundle(entry, status, key if team_id is None else (*key, team_id))
            if bundle is not None:
                bundle.requests[0] += 1
                bundle.attempts[0] += 1
                bundle.duration.observe(elapsed)
                _spend(bundle.spend, entry)
                if first_token is not None:
                    histogram = bundle.first_token
                    if histogram is None:
                        histogram = bundle.first_token = _cell(
                            self.first_tokens, bundle.first_token_labels, Histogram, self.max_series
                        )
                    histogram.observe(first_token)
                return
        self._request(entries, status, served, elapsed, first_token)

    def _bundle(self, entry: LedgerEntry, status: int, key: tuple[object, ...]) -> _Bundle | None:
        if len(self._bundles) >= self.max_series:
            return None
        alias, stream = entry.alias, "true" if entry.stream else "false"
        team = (entry.team_id or "",) if self.team_label else ()
        place = (alias, entry.deployment or "", entry.provider or "")
        bundle = self._bundles[key] = _Bundle(
            _cell(
                self.requests,
                (*place, entry.api, stream, _status_class(status), *team),
                _zero,
                self.max_series,
            ),
            _cell(self.attempts, (*place, _status_class(entry.status)), _zero, self.max_series),
            _cell(self.durations, (alias, entry.api, stream), Histogram, CONFIGURED),
            _cell(self.spend, (*place, *team), _no_spend, self.max_series),
            place,
        )
        return bundle

    def _request(
        self,
        entries: Sequence[LedgerEntry],
        status: int,
        served: int,
        elapsed: float,
        first_token: float | None,
    ) -> None:
        head = entries[0]
        alias, stream = head.alias, "true" if head.stream else "false"
        team = (head.team_id or "",) if self.team_label else ()
        deployment = provider = ""
        for entry in entries:
            if entry.attempt:
                self._attempt(entry, alias, team)
                if entry.attempt == served:
                    deployment, provider = entry.deployment or "", entry.provider or ""
        requests = (alias, deployment, provider, head.api, stream, _status_class(status), *team)
        _cell(self.requests, requests, _zero, self.max_series)[0] += 1
        _cell(self.durations, (alias, head.api, stream), Histogram, CONFIGURED).observe(elapsed)
        if first_token is not None:
            _cell(self.first_tokens, (alias, deployment, provider), Histogram, self.max_series).observe(
                first_token
            )

    def _attempt(self, entry: LedgerEntry, alias: str, team: Labels) -> None:
        status = entry.status
        place = (alias, entry.deployment or "", entry.provider or "")
        _cell(self.attempts, (*place, _status_class(status)), _zero, self.max_series)[0] += 1
        if status >= 400 and entry.attempt < entry.attempts and entry.reason not in NOT_FAILED:
            reason = entry.reason
            cause = RATE_LIMITED if status == 429 else reason if reason in CAUSES else OTHER
            _cell(self.failovers, (*place, cause), _zero, self.max_series)[0] += 1
        _spend(_cell(self.spend, (*place, *team), _no_spend, self.max_series), entry)

    def shadow(self, entry: LedgerEntry) -> None:
        """A mirror's shadow request ended (its ledger entry): counted by outcome, its cost as
        rehearsal spend (never in `turnout_cost_usd`, which is the customers' traffic)."""
        place = (entry.alias, entry.deployment or "")
        status = entry.status
        outcome = (
            "answered"
            if status < 400
            else "timeout"
            if status == 504
            else "cut_short"
            if entry.reason == "gateway_shutdown"
            else "failed"
        )
        _cell(self.shadows, (*place, outcome), _zero, self.max_series)[0] += 1
        _cell(self.shadow_spend, place, _zero, self.max_series)[0] += entry.cost_micros or 0

    def shadow_not_sent(self, alias: str, why: str) -> None:
        _cell(self.shadows, (alias, "", why), _zero, self.max_series)[0] += 1

    def refused(self, kind: str) -> None:
        """A request refused before any provider was called (a budget, prepaid credit, a limit)."""
        self.refusals[kind] = self.refusals.get(kind, 0) + 1

    # ------------------------------------------------------------------ read at scrape time

    def collect(self) -> Iterator[Metric]:
        team = ["team"] if self.team_label else []
        place = ["alias", "deployment", "provider"]
        requests = CounterMetricFamily(
            "turnout_requests",
            "Requests the ledger recorded, by the deployment that answered (empty: none did), API, "
            "stream and the status class they ended with.",
            labels=[*place, "api", "stream", "status_class", *team],
        )
        for key, count in self.requests.items():
            requests.add_metric(list(key), count[0])
        yield requests
        yield _histograms(
            "turnout_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer (a stream's last event).",
            ["alias", "api", "stream"],
            self.durations,
        )
        yield _histograms(
            "turnout_time_to_first_token_seconds",
            "Seconds from a streamed request's arrival to its first token of output.",
            place,
            self.first_tokens,
        )
        attempts = CounterMetricFamily(
            "turnout_upstream_attempts",
            "Attempts sent to upstream deployments, by the status class each ended with.",
            labels=[*place, "status_class"],
        )
        for key, count in self.attempts.items():
            attempts.add_metric(list(key), count[0])
        yield attempts
        failovers = CounterMetricFamily(
            "turnout_failovers",
            "Failed upstream attempts that another attempt followed, by the deployment that failed and why.",
            labels=[*place, "cause"],
        )
        for key, count in self.failovers.items():
            failovers.add_metric(list(key), count[0])
        yield failovers
        yield from self._spend(place + team)
        refusals = CounterMetricFamily(
            "turnout_refusals",
            "Requests refused before any provider was called, by what refused them.",
            labels=["kind"],
        )
        for kind, refused in self.refusals.items():
            refusals.add_metric([kind], refused)
        yield refusals
        yield from self._shadows()

    def _shadows(self) -> Iterator[Metric]:
        shadows = CounterMetricFamily(
            "turnout_shadow_requests",
            "Requests a mirror shadowed to its candidate deployment, by outcome (answered, failed, "
            "timeout, cut_short), and those it did not send (busy, budget, unsupported, "
            "out_of_service; deployment empty).",
            labels=["alias", "deployment", "outcome"],
        )
        for key, count in self.shadows.items():
            shadows.add_metric(list(key), count[0])
        yield shadows
        spend = CounterMetricFamily(
            "turnout_rehearsal_cost_usd",
            "What mirrors' shadow requests cost at the candidates' prices, USD (rehearsal spend).",
            labels=["alias", "deployment"],
        )
        for key, spent in self.shadow_spend.items():
            spend.add_metric(list(key), spent[0] / MICROS)
        yield spend

    def _spend(self, labels: list[str]) -> Iterator[Metric]:
        tokens = CounterMetricFamily(
            "turnout_tokens", "Tokens upstream attempts used, by kind.", labels=[*labels, "kind"]
        )
        cost = CounterMetricFamily(
            "turnout_cost_usd", "What upstream attempts cost at the providers' prices, USD.", labels=labels
        )
        charge = CounterMetricFamily(
            "turnout_customer_charge_usd",
            "What the callers' teams were charged for upstream attempts (their prices), USD.",
            labels=labels,
        )
        unpriced = CounterMetricFamily(
            "turnout_unpriced_attempts",
            "Upstream attempts whose model has no known price (not in the cost).",
            labels=labels,
        )
        searches = CounterMetricFamily(
            "turnout_search_units",
            "Search units rerankers billed (one query with up to 100 documents each).",
            labels=labels,
        )
        for key, spent in self.spend.items():
            values = list(key)
            for index, kind in enumerate(TOKEN_KINDS):
                tokens.add_metric([*values, kind], spent[index])
            cost.add_metric(values, spent[5] / MICROS)
            charge.add_metric(values, spent[6] / MICROS)
            unpriced.add_metric(values, spent[7])
            searches.add_metric(values, spent[8])
        yield from (tokens, cost, charge, unpriced, searches)


def _histograms(
    name: str, documentation: str, labels: list[str], table: dict[Labels, Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, histogram in table.items():
        family.add_metric(list(key), histogram.buckets(), histogram.total)
    return family


class RequestCollector(Collector):
    def __init__(self, metrics: RequestMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()
