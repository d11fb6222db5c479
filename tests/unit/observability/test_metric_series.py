"""Clients name the deployments a wildcard alias reaches: past the cap on label sets per metric,
new deployments are counted together under `other`, so a scrape cannot grow without bound, and
nothing is lost from the totals. A hedge's loser is an attempt, not a failover."""

from __future__ import annotations

import msgspec

from turnout.domain.ledger_entry import LedgerEntry
from turnout.observability.metrics import RequestMetrics


def entry(model: str, *, attempt: int = 1, attempts: int = 1, status: int = 200) -> LedgerEntry:
    return LedgerEntry(
        request_id=f"r-{model}",
        attempt=attempt,
        attempts=attempts,
        at=0.0,
        api="chat",
        key_id="k",
        alias="up/*",
        deployment=f"up/{model}",
        provider="up",
        model=model,
        status=status,
        input_tokens=10,
        output_tokens=5,
        cost_micros=7,
        customer_price_micros=7,
    )


def test_deployments_past_the_cap_are_counted_as_other() -> None:
    metrics = RequestMetrics(max_series=3)
    for n in range(10):
        metrics.request([entry(f"m{n}")], 200, 1, 0.01, None)
    requests = {key[1]: cell[0] for key, cell in metrics.requests.items()}
    assert requests == {"up/m0": 1, "up/m1": 1, "up/m2": 1, "other": 7}
    tokens = {key[1]: cell[0] for key, cell in metrics.spend.items()}
    assert tokens == {"up/m0": 10, "up/m1": 10, "up/m2": 10, "other": 70}
    assert sum(cell[0] for cell in metrics.attempts.values()) == 10


def test_a_failover_past_the_cap_is_still_counted() -> None:
    metrics = RequestMetrics(max_series=1)
    metrics.request([entry("a")], 200, 1, 0.01, None)
    failed = entry("b", attempts=2, status=502)
    answered = entry("c", attempt=2, attempts=2)
    metrics.request([failed, answered], 200, 2, 0.02, None)
    assert {key: cell[0] for key, cell in metrics.failovers.items()} == {
        ("up/*", "up/b", "up", "other"): 1  # 502 with no reason given: cause "other"
    }
    assert sum(cell[0] for cell in metrics.requests.values()) == 2


def test_a_hedge_that_lost_is_not_a_failover() -> None:
    metrics = RequestMetrics()
    lost = msgspec.structs.replace(entry("slow", attempts=2, status=499), reason="client_closed")
    metrics.request([lost, entry("fast", attempt=2, attempts=2)], 200, 2, 0.02, None)
    assert metrics.failovers == {}
    assert {key[1]: cell[0] for key, cell in metrics.attempts.items()} == {"up/slow": 1, "up/fast": 1}
