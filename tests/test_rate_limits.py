"""Rate limits per key, team, user and alias, on one instance (in memory): requests per minute and
per day, tokens per minute (the request's estimate held at admission, settled to what it used),
requests at once. A refusal is 429 `rate_limit_exceeded` naming the limit, with Retry-After; every
answer a limit applies to carries OpenAI's `x-ratelimit-*` headers (Anthropic's
`anthropic-ratelimit-*` and error shape on /v1/messages). Limits are part of authority: nobody
issues a key with limits looser than their own key's or their team's, changes are audited, and a
team's defaults fill a new key's open limits."""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for

HANG = "hang"  # an alias whose upstream never answers (its requests end at the 3 s timeout)


def doc(data: Path, **models: Any) -> dict[str, Any]:
    return {
        "storage": {"data_dir": str(data)},
        "providers": {"fake": {"type": "fake"}},
        "models": {
            "chat": {"provider": "fake", "model": "m?reply=one+two+three"},
            HANG: {"provider": "fake", "model": "m?fail=hang", "timeouts": {"total": "3s"}},
            **models,
        },
    }


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    data = tmp_path / "data"
    models = {
        "capped": {"provider": "fake", "model": "m?reply=ok", "limits": {"rpm": 2}},
        "spill": {
            "targets": [
                {"provider": "fake", "model": "m?reply=a", "name": "small", "rpm": 2},
                {"provider": "fake", "model": "m?reply=b", "name": "big"},
            ]
        },
        "single": {"targets": [{"provider": "fake", "model": "m?reply=c", "name": "only", "rpm": 2}]},
    }
    gateway = Gateway(settings_for(doc(data, **models), data)).start()
    try:
        yield gateway
    finally:
        gateway.stop()


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


class Admin:
    def __init__(self, gateway: Gateway, key: str = MASTER_KEY) -> None:
        self.http = httpx.Client(
            base_url=gateway.root_url, headers={"authorization": f"Bearer {key}"}, timeout=20
        )
        OPEN.append(self.http)

    def call(self, method: str, path: str, status: int = 200, **body: Any) -> dict[str, Any]:
        answer = self.http.request(method, path, json=body)
        assert answer.status_code == status, answer.text
        return answer.json()  # type: ignore[no-any-return]


def wait_for(gateway: Gateway, condition: Callable[[], bool], seconds: float = 20) -> None:
    """Until `condition` holds in the gateway's loop (a state reached, not a race hoped for)."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not gateway.call(condition):
        assert time.monotonic() < deadline, "the gateway never reached the state waited for"
        pause.wait(0.01)


def chat(gateway: Gateway, key: str, model: str = "chat", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


def test_a_key_rpm_serves_its_limit_then_refuses_naming_it(gateway: Gateway) -> None:
    key = Admin(gateway).call("POST", "/admin/keys", name="k", limits={"rpm": 3})
    answers = [chat(gateway, key["key"]) for _ in range(2)]
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key['key']}"},
        timeout=20,
    ) as streamed:  # a stream's head carries them too
        assert streamed.status_code == 200
        assert b"[DONE]" in streamed.read()
        answers.append(streamed)
    answers.append(chat(gateway, key["key"]))
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-limit-requests"] for a in answers[:3]] == ["3", "3", "3"]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0", "0"]
    assert re.fullmatch(r"\d+s|1m0s", answers[0].headers["x-ratelimit-reset-requests"])
    refused = answers[3]
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "key rpm" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "x-ratelimit-limit-tokens" not in refused.headers  # no token limit applies
    # the official SDK raises its rate-limit error, and another key is not held back
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0)
    with client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert chat(gateway, MASTER_KEY).status_code == 200
    assert "x-ratelimit-limit-requests" not in chat(gateway, MASTER_KEY).headers  # none applies
    scraped = httpx.get(gateway.root_url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
    refusals = re.search(r'^turnout_refusals_total\{kind="rate_limit"\} (\S+)$', scraped.text, re.MULTILINE)
    assert refusals is not None and float(refusals.group(1)) >= 2  # the 429 and the SDK's


def test_requests_per_day_are_a_limit_of_their_own(gateway: Gateway) -> None:
    key = Admin(gateway).call("POST", "/admin/keys", name="k", limits={"rpd": 2, "rpm": 100})
    answers = [chat(gateway, key["key"]) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "key rpd" in answers[2].json()["error"]["message"]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "2"  # the tightest is shown


def test_tokens_are_held_at_admission_and_settled_to_what_was_used(gateway: Gateway) -> None:
    key = Admin(gateway).call("POST", "/admin/keys", name="k", limits={"tpm": 1500})
    too_big = chat(gateway, key["key"], max_tokens=2000)  # could use more than the limit alone
    assert too_big.status_code == 429
    error = too_big.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "tokens"
    assert "key tpm" in error["message"]
    first = chat(gateway, key["key"], max_tokens=1000)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert first.headers["x-ratelimit-limit-tokens"] == "1500"
    # at admission it held its bound (over 1,000 tokens), so under 500 were left ...
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 500
    # ... and once it ended only what it used counts: the next one fits, and sees that
    second = chat(gateway, key["key"], max_tokens=1000)
    assert second.status_code == 200
    # the same request holds the same bound: what is left differs by what the first one used
    held_first = int(first.headers["x-ratelimit-remaining-tokens"])
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == held_first - used


def test_parallel_limit_counts_requests_in_flight_and_gives_places_back(gateway: Gateway) -> None:
    key = Admin(gateway).call("POST", "/admin/keys", name="k", limits={"parallel": 1})
    admission = gateway.services.pipeline.admission
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        hanging = pool.submit(chat, gateway, key["key"], HANG)
        running = f"turnout:limit:key:{key['id']}:parallel"
        wait_for(gateway, lambda: admission.running.get(running) == 1)
        refused = chat(gateway, key["key"])
        assert refused.status_code == 429
        assert "key parallel" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        assert hanging.result().status_code == 504  # its upstream timed out: its place is back
    assert [chat(gateway, key["key"]).status_code for _ in range(3)] == [200, 200, 200]  # one at a time


def test_team_user_and_alias_limits_apply_together_and_the_tightest_wins(gateway: Gateway) -> None:
    admin = Admin(gateway)
    team = admin.call("POST", "/admin/teams", name="red")["id"]
    user = admin.call("POST", "/admin/users", email="ana@example.com")["id"]
    admin.call("POST", f"/admin/teams/{team}/members", user_id=user, role="member")
    changed = admin.call("PATCH", f"/admin/teams/{team}", limits={"rpm": 3})
    assert changed["limits"] == {"rpm": 3}
    keys = [admin.call("POST", "/admin/keys", name=f"k{i}", team_id=team)["key"] for i in range(2)]
    answers = [chat(gateway, keys[i % 2]).status_code for i in range(4)]
    assert answers == [200, 200, 200, 429]  # both keys together
    assert "team rpm" in chat(gateway, keys[0]).json()["error"]["message"]
    # a user's limit holds all of their keys
    admin.call("PATCH", f"/admin/users/{user}", limits={"rpd": 1})
    own = [admin.call("POST", "/admin/keys", name=f"u{i}", user_id=user)["key"] for i in range(2)]
    assert chat(gateway, own[0]).status_code == 200
    refused = chat(gateway, own[1])
    assert refused.status_code == 429 and "user rpd" in refused.json()["error"]["message"]
    assert admin.call("GET", f"/admin/users/{user}")["limits"] == {"rpd": 1}
    # an alias's limit (configuration) holds every key using it
    assert [chat(gateway, MASTER_KEY, "capped").status_code for _ in range(3)] == [200, 200, 429]
    assert "alias rpm" in chat(gateway, MASTER_KEY, "capped").json()["error"]["message"]


def test_the_anthropic_route_answers_in_anthropics_shape_and_headers(gateway: Gateway) -> None:
    key = Admin(gateway).call("POST", "/admin/keys", name="k", limits={"rpm": 1, "tpm": 100_000})
    client = anthropic.Anthropic(base_url=gateway.root_url, api_key=key["key"], max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="chat", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw.headers["anthropic-ratelimit-requests-reset"])
    assert raw.headers["anthropic-ratelimit-tokens-limit"] == "100000"
    assert "x-ratelimit-limit-requests" not in raw.headers
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="chat", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    body = refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "key rpm" in body["error"]["message"]
    assert refused.value.response.headers["retry-after"]
    assert refused.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_limits_are_part_of_authority(gateway: Gateway) -> None:
    master = Admin(gateway)
    team = master.call("POST", "/admin/teams", name="blue")["id"]
    master.call("PATCH", f"/admin/teams/{team}", limits={"rpm": 100}, key_limits={"rpm": 10, "parallel": 2})
    # a team's defaults fill what a new key leaves open
    plain = master.call("POST", "/admin/keys", name="plain", team_id=team)
    assert plain["limits"] == {"rpm": 10, "parallel": 2}
    chosen = master.call("POST", "/admin/keys", name="chosen", team_id=team, limits={"tpm": 5000})
    assert chosen["limits"] == {"rpm": 10, "tpm": 5000, "parallel": 2}
    # a team admin with limits of their own issues no looser key, and cannot lift the team's
    admin_key = master.call(
        "POST", "/admin/keys", name="admin", team_id=team, role="admin", limits={"rpm": 50, "tpm": 9000}
    )
    admin = Admin(gateway, admin_key["key"])
    denied = admin.call("POST", "/admin/keys", 403, name="x", limits={"rpm": 60})
    assert denied["error"]["code"] == "limit_above_issuer" and "rpm" in denied["error"]["message"]
    denied = admin.call("POST", "/admin/keys", 403, name="x", limits={"tpm": 20000})
    assert "tpm" in denied["error"]["message"]
    issued = admin.call("POST", "/admin/keys", name="y", limits={"rpm": 5})
    assert issued["limits"] == {"rpm": 5, "tpm": 9000, "parallel": 2}  # the issuer's tpm fills in
    denied = admin.call("PATCH", f"/admin/keys/{issued['id']}", 403, limits={"rpm": 500})
    assert denied["error"]["code"] == "limit_above_issuer"
    admin.call("PATCH", f"/admin/teams/{team}", 403, limits={"rpm": 1000})
    # the organisation may not give a key more than its team allows either... unless it is the master
    assert master.call("PATCH", f"/admin/keys/{issued['id']}", limits={"rpm": 500})["limits"] == {"rpm": 500}
    # bad limits are refused, naming the field
    bad = master.call("POST", "/admin/keys", 400, name="z", limits={"rpm": 0})
    assert bad["error"]["param"] == "limits.rpm"
    bad = master.call("PATCH", f"/admin/teams/{team}", 400, key_limits={"tpm": -5})
    assert bad["error"]["param"] == "key_limits.tpm"
    # every change is in the audit log
    audit = master.call("GET", "/admin/audit")["data"]
    actions = [entry["action"] for entry in audit]
    assert "team.limits" in actions
    change = next(e for e in audit if e["action"] == "key.update" and e["target_id"] == issued["id"])
    assert change["before"]["limits"]["rpm"] == 5 and change["after"]["limits"]["rpm"] == 500


def test_a_deployment_at_its_capacity_is_skipped_and_all_at_capacity_is_a_429(gateway: Gateway) -> None:
    served = [chat(gateway, MASTER_KEY, "spill").headers["x-turnout-deployment"] for _ in range(4)]
    assert served == ["small", "small", "big", "big"]  # before the provider's own limit
    answers = [chat(gateway, MASTER_KEY, "single") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    error = answers[2].json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "deployment rpm" in error["message"]
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60
