"""A game day's decision per request (routing/game_day.py): a share takes about that share of
requests, the same way for every plan of one request; teams take only theirs; it tips over its
threshold once, and only after its minimum of requests."""

from __future__ import annotations

from turnout.routing.game_day import Drill, lot

NOW = 1_000.0


def drill(**kw: object) -> Drill:
    return Drill(id="gd_1", provider="p", ends_at=NOW + 60, error_rate=0.5, min_requests=4, **kw)  # type: ignore[arg-type]


def test_a_share_takes_that_share_of_requests_and_decides_alike_for_one_request() -> None:
    d = drill(share=0.25)
    ids = [f"req_0123456789ab{n:010x}" for n in range(20_000)]  # as turnout numbers them
    taken = sum(d.applies(None, i, NOW) for i in ids)
    assert 0.23 < taken / len(ids) < 0.27
    assert all(d.applies(None, i, NOW) == (lot(i) < 0.25) for i in ids[:100])


def test_teams_take_only_their_requests_and_the_window_ends_it() -> None:
    d = drill(teams=frozenset({"team_red"}))
    assert d.applies("team_red", "r1", NOW)
    assert not d.applies("team_blue", "r1", NOW) and not d.applies(None, "r1", NOW)
    assert not d.applies("team_red", "r1", NOW + 60)  # its window is over


def test_it_tips_over_once_past_its_minimum_and_then_applies_to_nothing() -> None:
    d = drill(share=1.0)
    assert [d.ended(failed=True) for _ in range(3)] == [False, False, False]  # below min_requests
    assert d.ended(failed=True) is True
    assert d.ended(failed=True) is False  # once
    assert not d.applies(None, "r", NOW)


def test_an_error_rate_at_the_threshold_is_not_above_it() -> None:
    d = drill(share=1.0)
    outcomes = [True, False, True, False]
    assert not any(d.ended(failed=f) for f in outcomes)  # 50%: not above 50%
    assert d.observed_rate == 0.5
