"""Game days through the admin API: a provider taken out of service for chosen teams (or a share of
the traffic) for a window, once a second admin approves; the rest of the traffic keeps it; ending
the game day brings it back; a game day whose affected requests fail above its threshold is rolled
back by itself. Every step is in the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from turnout.cli.main import main

from support.gateway import MASTER_KEY, Gateway, settings_for

WAIT = 20.0
CLEAN_ENV = {"TURNOUT_URL": None, "TURNOUT_ADMIN_KEY": None, "TURNOUT_MASTER_KEY": None}


def start(tmp_path: Path, **extra: Any) -> Gateway:
    doc = {
        "providers": {"alpha": {"type": "fake"}, "beta": {"type": "fake"}},
        "models": {
            "chat": {
                "targets": [
                    {"provider": "alpha", "model": "m", "priority": 0},
                    {"provider": "beta", "model": "m", "priority": 1},
                ]
            },
            "solo": {"provider": "alpha", "model": "m"},
        },
        **extra,
    }
    return Gateway(settings_for(doc, tmp_path / "data")).start()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = start(tmp_path)
    yield gateway
    gateway.stop()


def served_by(gateway: Gateway, key: str, model: str = "chat") -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    return raw.headers["x-turnout-deployment"]


Call = Callable[..., Any]


def caller(http: httpx.Client) -> Call:
    def call(method: str, path: str, key: str = MASTER_KEY, status: int = 200, **body: Any) -> Any:
        response = http.request(method, path, headers={"authorization": f"Bearer {key}"}, json=body or None)
        assert response.status_code == status, response.text
        return response.json()

    return call


def test_a_game_day_takes_a_provider_out_for_chosen_teams_once_a_second_admin_approves(
    gateway: Gateway,
) -> None:
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
        call = caller(http)
        admin = call("POST", "/admin/users", email="ops@example.com", role="admin")
        second = call("POST", "/admin/keys", name="ops", user_id=admin["id"], role="admin")["key"]
        red = call("POST", "/admin/teams", name="red")["id"]
        red_key = call("POST", "/admin/keys", name="red app", team_id=red)["key"]
        red_admin = call("POST", "/admin/keys", name="red admin", team_id=red, role="admin")["key"]

        body = {"provider": "alpha", "teams": [red], "duration": "1h", "error_rate": 0.5}
        call("POST", "/admin/game-days", red_admin, 403, **body)  # organisation-wide admins only
        pending = call("POST", "/admin/game-days", status=202, **body)
        assert pending["action"] == "start_game_day" and pending["params"]["teams"] == [red]
        assert served_by(gateway, red_key) == "alpha/m"  # not before the second admin says so
        approved = call("POST", f"/admin/approvals/{pending['id']}/approve", second)
        game_day = approved["result"]
        assert (game_day["provider"], game_day["state"], game_day["teams"]) == ("alpha", "active", [red])
        assert game_day["ends_at"] - game_day["starts_at"] == 3600

        assert served_by(gateway, red_key) == "beta/m"  # red's traffic: without alpha
        assert served_by(gateway, MASTER_KEY) == "alpha/m"  # everyone else's: as before
        (listed,) = call("GET", "/admin/game-days")["data"]
        assert listed["id"] == game_day["id"] and listed["affected_requests"] == 1

        ended = call("POST", f"/admin/game-days/{game_day['id']}/end", second)
        assert ended["state"] == "ended" and ended["end_reason"] == "ended by an admin"
        assert ended["affected_requests"] == 1  # what it did stays in the list
        assert served_by(gateway, red_key) == "alpha/m"
        call("POST", "/admin/game-days/gd_nothing/end", status=404)
        actions = [e["action"] for e in call("GET", "/admin/audit?action=game_day.*")["data"]]
        assert actions == ["game_day.end", "game_day.start"]


def test_a_game_day_is_rolled_back_when_the_affected_requests_fail_above_its_threshold(
    tmp_path: Path,
) -> None:
    gateway = start(tmp_path, governance={"two_person_rule": []})
    try:
        with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
            call = caller(http)
            body = {"provider": "alpha", "share": 1.0, "duration": "1h", "error_rate": 0.5, "min_requests": 3}
            game_day = call("POST", "/admin/game-days", **body)
            assert game_day["state"] == "active"
            assert served_by(gateway, MASTER_KEY) == "beta/m"  # `chat` has another provider: fine
            with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as sdk:
                for _ in range(2):  # `solo` has no other: its requests fail, and they count
                    with pytest.raises(openai.InternalServerError):
                        sdk.chat.completions.create(
                            model="solo", messages=[{"role": "user", "content": "hi"}]
                        )
            # 2 failed of 3 affected: above half, so it is rolled back, at once on this instance ...
            assert served_by(gateway, MASTER_KEY, "solo") == "alpha/m"
            assert served_by(gateway, MASTER_KEY) == "alpha/m"

            def state() -> Any:
                return call("GET", "/admin/game-days")["data"][0]

            deadline = time.monotonic() + WAIT  # ... and for every instance once it is written
            while state()["state"] != "rolled_back":
                assert time.monotonic() < deadline, state()
                time.sleep(0.02)
            assert state()["end_reason"] == "rolled back: 2 of 3 affected requests failed (67%, above 50%)"
            (rollback,) = call("GET", "/admin/audit?action=game_day.rollback")["data"]
            assert rollback["target_id"] == game_day["id"] and rollback["actor_key_id"] == "turnout"
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"provider": "alpha", "duration": "1h"}, 400, "share"),
        ({"provider": "alpha", "share": 0, "duration": "1h"}, 400, "share"),
        ({"provider": "alpha", "share": 1.5, "duration": "1h"}, 400, "share"),
        ({"provider": "alpha", "teams": [], "duration": "1h"}, 400, "teams"),
        ({"provider": "alpha", "teams": ["t" * 41], "duration": "1h"}, 400, "teams"),
        ({"provider": "alpha", "share": 0.1, "duration": "8d"}, 400, "duration"),
        ({"provider": "alpha", "share": 0.1, "duration": "soon"}, 400, "duration"),
        ({"provider": "alpha", "share": 0.1, "duration": "1h", "error_rate": 1}, 400, "error_rate"),
        ({"provider": "alpha", "share": 0.1, "duration": "1h", "min_requests": 0}, 400, "min_requests"),
        ({"provider": "alpha", "share": 0.1, "duration": "1h", "extra": 1}, 400, None),
        ({"provider": "gamma", "share": 0.1, "duration": "1h"}, 404, "provider"),
        ({"provider": "alpha", "teams": ["team_nope"], "duration": "1h"}, 404, "teams"),
    ],
)
def test_a_game_day_that_cannot_be_run_as_asked_is_refused(
    gateway: Gateway, body: dict[str, Any], status: int, param: str | None
) -> None:
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
        error = caller(http)("POST", "/admin/game-days", status=status, **body)["error"]
    assert error["param"] == param


def test_the_cli_starts_lists_and_ends_a_game_day_under_the_two_person_rule(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
        call = caller(http)
        admin = call("POST", "/admin/users", email="ops@example.com", role="admin")
        second = call("POST", "/admin/keys", name="ops", user_id=admin["id"], role="admin")["key"]

    def cli(*args: str, key: str = MASTER_KEY) -> str:
        result = CliRunner().invoke(main, [*args, "--url", gateway.root_url, "--key", key], env=CLEAN_ENV)
        assert result.exit_code == 0, result.output
        return result.output

    started = cli("game-day", "start", "--provider", "alpha", "--share", "1", "--duration", "30m")
    assert started.startswith("waiting for a second admin: act_")
    action_id = started.split(": ", 1)[1].split()[0]
    approved = cli("approvals", "approve", action_id, key=second)
    game_day_id = json.loads(approved[approved.index("{") :])["id"]
    assert served_by(gateway, MASTER_KEY) == "beta/m"
    listed = cli("game-day", "list")
    assert listed.startswith(f"{game_day_id}  active  alpha out for share 1")
    assert cli("game-day", "end", game_day_id).startswith(f"{game_day_id}  ended  alpha")
    assert served_by(gateway, MASTER_KEY) == "alpha/m"
    refused = CliRunner().invoke(
        main,
        [
            "game-day",
            "start",
            "--provider",
            "alpha",
            "--duration",
            "30m",
            "--url",
            gateway.root_url,
            "--key",
            MASTER_KEY,
        ],
        env=CLEAN_ENV,
    )
    assert refused.exit_code == 1 and "'share'" in refused.output


def test_a_game_day_ends_by_itself_when_its_window_runs_out(tmp_path: Path) -> None:
    gateway = start(tmp_path, governance={"two_person_rule": []})
    try:
        with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
            call = caller(http)
            game_day = call("POST", "/admin/game-days", provider="alpha", share=1.0, duration="1s")
            deadline = time.monotonic() + WAIT
            while call("GET", "/admin/game-days")["data"][0]["state"] == "active":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert served_by(gateway, MASTER_KEY) == "alpha/m"  # its window is over
            deadline = time.monotonic() + WAIT  # and every instance marks it so (the first one audits)
            while not call("GET", "/admin/audit?action=game_day.end")["data"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            (ended,) = call("GET", "/admin/audit?action=game_day.end")["data"]
            assert ended["target_id"] == game_day["id"] and ended["actor_key_id"] == "turnout"
            assert call("GET", "/admin/game-days")["data"][0]["end_reason"] == "its window ran out"
    finally:
        gateway.stop()
