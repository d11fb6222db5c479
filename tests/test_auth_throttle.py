"""Key guessing is slowed per client address: after `auth.failed_attempts.limit` failed
authentications within the window, the address gets 429 with Retry-After — without its key being
looked at, so even a valid key waits — until the window ends. Other addresses are not affected.
The client address is the socket peer (distinct loopback addresses here), or, behind a trusted
proxy (`server.trusted_proxies`), the right-most untrusted address of its forwarded header."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from turnout.config.loader import ConfigError
from turnout.providers.config_loader import build_settings

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.upstream import Upstream

WRONG = "sk-turnout-" + "W" * 43  # of the right shape: a real guess
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _doc(upstream: Upstream, limit: int = 3, window: str = "60s", **server: Any) -> dict[str, Any]:
    return {
        **openai_doc(upstream),
        "auth": {"failed_attempts": {"limit": limit, "window": window}},
        **({"server": server} if server else {}),
    }


@pytest.fixture
def clients() -> Iterator[Callable[[str], httpx.Client]]:
    """HTTP clients whose connections come from a given loopback address (127.0.0.0/8 is local)."""
    opened: list[httpx.Client] = []

    def client_from(address: str) -> httpx.Client:
        c = httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=20)
        opened.append(c)
        return c

    yield client_from
    for c in opened:
        c.close()


def _chat(http: httpx.Client, gateway: Gateway, key: str, **headers: str) -> httpx.Response:
    return http.post(
        f"{gateway.base_url}/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}", **headers},
    )


def _assert_throttled(response: httpx.Response, window: float) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= window
    error = response.json()["error"]
    assert error["code"] == "too_many_failed_authentications"
    assert error["type"] == "rate_limit_error" and error["param"] is None
    assert "failed to authenticate" in error["message"] and MASTER_KEY not in response.text


def test_an_address_over_the_limit_waits_even_with_a_valid_key(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_doc(upstream, limit=3), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with openai.OpenAI(base_url=gateway.base_url, api_key=WRONG, max_retries=0, timeout=20) as wrong:
        for _ in range(3):
            with pytest.raises(openai.AuthenticationError) as refused:
                wrong.chat.completions.create(**CHAT)
            assert refused.value.code == "invalid_api_key"
        with pytest.raises(openai.RateLimitError) as throttled:
            wrong.chat.completions.create(**CHAT)
    assert throttled.value.code == "too_many_failed_authentications"
    _assert_throttled(throttled.value.response, 60)
    before = len(upstream.requests)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as good:
        with pytest.raises(openai.RateLimitError):
            good.chat.completions.create(**CHAT)  # its key is not even looked at
        with pytest.raises(openai.RateLimitError):
            good.models.list()
    admin = httpx.get(f"{gateway.root_url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"})
    _assert_throttled(admin, 60)
    assert len(upstream.requests) == before
    ready = httpx.get(f"{gateway.root_url}/health/ready", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert ready.status_code == 200 and "deployments" not in ready.json()  # readiness still answers
    assert httpx.get(f"{gateway.root_url}/health/ready").status_code == 200


def test_other_addresses_are_not_affected(
    upstream: Upstream, start_gateway: Callable[..., Gateway], clients: Callable[[str], httpx.Client]
) -> None:
    gateway = start_gateway(_doc(upstream, limit=2), {"UPSTREAM_KEY": UPSTREAM_KEY})
    guesser, neighbour = clients("127.0.0.2"), clients("127.0.0.3")
    assert [_chat(guesser, gateway, WRONG).status_code for _ in range(2)] == [401, 401]
    _assert_throttled(_chat(guesser, gateway, MASTER_KEY), 60)
    assert _chat(neighbour, gateway, MASTER_KEY).status_code == 200  # its success ...
    assert _chat(neighbour, gateway, WRONG).status_code == 401  # (and its own failure count) ...
    _assert_throttled(_chat(guesser, gateway, MASTER_KEY), 60)  # ... change nothing for the guesser


def test_requests_without_a_key_are_not_counted(
    upstream: Upstream, start_gateway: Callable[..., Gateway], clients: Callable[[str], httpx.Client]
) -> None:
    gateway = start_gateway(_doc(upstream, limit=2), {"UPSTREAM_KEY": UPSTREAM_KEY})
    http = clients("127.0.0.4")
    for _ in range(5):
        missing = http.post(f"{gateway.base_url}/chat/completions", json=CHAT)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert _chat(http, gateway, MASTER_KEY).status_code == 200


def test_the_address_is_let_in_again_when_the_window_ends(
    upstream: Upstream, start_gateway: Callable[..., Gateway], clients: Callable[[str], httpx.Client]
) -> None:
    gateway = start_gateway(_doc(upstream, limit=2, window="1s"), {"UPSTREAM_KEY": UPSTREAM_KEY})
    http = clients("127.0.0.5")
    assert [_chat(http, gateway, WRONG).status_code for _ in range(2)] == [401, 401]
    _assert_throttled(_chat(http, gateway, MASTER_KEY), 1)
    deadline = time.monotonic() + 10
    while (answer := _chat(http, gateway, MASTER_KEY)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the window's end (the refused requests do not extend it)
    assert answer.status_code == 200
    assert _chat(http, gateway, WRONG).status_code == 401  # a new window: counted from one again


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    upstream: Upstream, start_gateway: Callable[..., Gateway], clients: Callable[[str], httpx.Client]
) -> None:
    gateway = start_gateway(_doc(upstream, limit=2), {"UPSTREAM_KEY": UPSTREAM_KEY})
    http = clients("127.0.0.6")
    for i in range(2):  # a different made-up address each time: no escape
        forged = {"x-forwarded-for": f"198.51.100.{i}", "forwarded": f"for=198.51.100.{i}"}
        assert _chat(http, gateway, WRONG, **forged).status_code == 401
    _assert_throttled(_chat(http, gateway, MASTER_KEY, **{"x-forwarded-for": "198.51.100.99"}), 60)


def test_behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_hop(
    upstream: Upstream, start_gateway: Callable[..., Gateway], clients: Callable[[str], httpx.Client]
) -> None:
    doc = _doc(upstream, limit=2, trusted_proxies=["127.0.0.0/24", "10.1.0.0/16"])
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    proxy = clients("127.0.0.7")  # the load balancer: every client comes through it
    # the client may write anything on the left; our proxies append what they saw on the right
    for chain in ("1.1.1.1, 203.0.113.7", "2.2.2.2, 203.0.113.7, 10.1.2.3"):
        assert _chat(proxy, gateway, WRONG, **{"x-forwarded-for": chain}).status_code == 401
    _assert_throttled(_chat(proxy, gateway, MASTER_KEY, **{"x-forwarded-for": "203.0.113.7"}), 60)
    assert _chat(proxy, gateway, MASTER_KEY, **{"x-forwarded-for": "203.0.113.8"}).status_code == 200
    assert _chat(proxy, gateway, MASTER_KEY).status_code == 200  # no header: the proxy itself


def test_the_forwarded_header_can_be_used_instead(
    upstream: Upstream, start_gateway: Callable[..., Gateway], clients: Callable[[str], httpx.Client]
) -> None:
    doc = _doc(upstream, limit=2, trusted_proxies=["127.0.0.8"], forwarded_header="forwarded")
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    proxy = clients("127.0.0.8")
    for hop in ('for="[2001:db8::1]:4711";proto=https', "for=192.0.2.1, for=[2001:db8::1]"):
        assert _chat(proxy, gateway, WRONG, forwarded=hop).status_code == 401
    _assert_throttled(_chat(proxy, gateway, MASTER_KEY, forwarded='for="[2001:db8::1]"'), 60)
    ignored = {"x-forwarded-for": "2001:db8::1"}  # not the configured header: the proxy is the client
    assert _chat(proxy, gateway, MASTER_KEY, **ignored).status_code == 200


def test_the_limit_can_be_turned_off(
    upstream: Upstream, start_gateway: Callable[..., Gateway], clients: Callable[[str], httpx.Client]
) -> None:
    gateway = start_gateway(_doc(upstream, limit=0), {"UPSTREAM_KEY": UPSTREAM_KEY})
    http = clients("127.0.0.9")
    assert {_chat(http, gateway, WRONG).status_code for _ in range(30)} == {401}
    assert _chat(http, gateway, MASTER_KEY).status_code == 200


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"server": {"trusted_proxies": ["10.0.0.1/8"]}}, "server.trusted_proxies[0]", "host bits set"),
        ({"server": {"trusted_proxies": ["lb.internal"]}}, "server.trusted_proxies[0]", "CIDR"),
        (
            {"server": {"forwarded_header": "x-real-ip"}},
            "server.forwarded_header",
            "unknown choice 'x-real-ip' (one of: x-forwarded-for, forwarded)",
        ),
        ({"auth": {"failed_attempts": {"limit": -1}}}, "auth.failed_attempts.limit", "0 (no limit) or more"),
        ({"auth": {"failed_attempts": {"window": "0s"}}}, "auth.failed_attempts.window", "positive"),
        ({"auth": {"failed_attempts": {"windw": "1m"}}}, "auth.failed_attempts.windw", "did you mean"),
    ],
)
def test_the_settings_are_checked(section: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build_settings({**section, "storage": {"data_dir": "/nonexistent"}}, {}, source="test")
    [problem] = refused.value.problems
    assert problem.startswith(f"{path}: ") and message in problem, problem


def test_the_defaults() -> None:
    settings = build_settings({"storage": {"data_dir": "/nonexistent"}}, {}, source="test")
    assert (settings.auth.failed_attempts.limit, settings.auth.failed_attempts.window) == (20, 60.0)
    assert settings.server.trusted_proxies == () and settings.server.forwarded_header == "x-forwarded-for"


def test_the_admin_api_documents_the_refusal(gateway: Gateway) -> None:
    document = httpx.get(f"{gateway.root_url}/openapi.json").json()
    assert document["paths"]["/admin/keys"]["get"]["responses"]["429"] == {
        "$ref": "#/components/responses/TooManyFailedAuthentications"
    }
