"""Failover, as a client sees it: the official SDK against a real gateway in front of real local
upstreams (turnout's fake provider, and scriptable OpenAI-format servers) that fail on purpose."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.upstream import Upstream

QUESTION = "Where does the train go?"
ANSWER = f"You said: {QUESTION}"
USER = [{"role": "user", "content": QUESTION}]
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
NO_BREAKER = {"consecutive_failures": 10000, "min_requests": 10000}


def fake_doc(
    models: dict[str, Any], *providers: str, routing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fake providers named `providers` (each its own server, so each counts its own requests)."""
    return {
        "routing": routing or {},
        "providers": {name: {"type": "fake", "fake": {"chunks": 10}} for name in providers},
        "models": models,
    }


def sdk(gateway: Gateway, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=retries, timeout=30)


def served_by(gateway: Gateway, headers: dict[str, str] | None = None, **extra: Any) -> tuple[str, int, Any]:
    """(deployment, attempts, completion) of one plain request to the alias `chat`."""
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=USER, extra_headers=headers or {}, **extra
        )
    return raw.headers["x-turnout-deployment"], int(raw.headers["x-turnout-attempts"]), raw.parse()


def upstream_calls(gateway: Gateway, provider: str) -> int:
    return gateway.services.registry.fakes[provider].requests


def deployment_state(gateway: Gateway, name: str) -> dict[str, Any]:
    router = gateway.services.pipeline.router
    states = {s.label: s for s in router.deployments.all()}
    return gateway.call(lambda: states[name].describe(router.clock()))


def raw_stream(gateway: Gateway, body: dict[str, Any]) -> tuple[httpx.Headers, list[bytes]]:
    """The SSE events of a streamed request, as the client receives them."""
    events: list[bytes] = []
    with (
        httpx.Client(base_url=gateway.base_url, timeout=30) as http,
        http.stream(
            "POST", "/chat/completions", json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}
        ) as response,
    ):
        assert response.status_code == 200
        buffer = b""
        for piece in response.iter_bytes():
            buffer += piece
        events = [e.removeprefix(b"data: ") for e in buffer.split(b"\n\n") if e.strip()]
        return response.headers, events


TWO = {
    "chat": {
        "targets": [
            {"provider": "alpha", "model": "m?fail=500", "name": "alpha"},
            {"provider": "beta", "model": "m", "name": "beta"},
        ]
    }
}


@pytest.fixture
def two_down(start_gateway: Callable[..., Gateway]) -> Gateway:
    """`chat` on a failing deployment (alpha) first and a healthy one (beta) second."""
    return start_gateway(fake_doc(TWO, "alpha", "beta", routing={"breaker": NO_BREAKER}))


# --------------------------------------------------------------------------- failing over


def test_a_failing_deployment_is_failed_over_invisibly(two_down: Gateway) -> None:
    deployment, attempts, completion = served_by(two_down)
    assert (deployment, attempts) == ("beta", 2)
    assert completion.choices[0].message.content == ANSWER
    assert upstream_calls(two_down, "alpha") == 1


def test_a_stream_fails_over_before_its_first_byte(two_down: Gateway) -> None:
    with sdk(two_down) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert raw.headers["x-turnout-deployment"] == "beta"
    assert text == ANSWER


def test_a_callers_error_is_not_retried(start_gateway: Callable[..., Gateway]) -> None:
    models = {
        "chat": {
            "targets": [
                {"provider": "alpha", "model": "m?fail=400", "name": "alpha"},
                {"provider": "beta", "model": "m", "name": "beta"},
            ]
        }
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta"))
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=USER)
    assert caught.value.response.headers["x-turnout-attempts"] == "1"
    assert upstream_calls(gateway, "beta") == 0


def test_a_single_deployment_is_retried_with_backoff(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_openai_doc(upstream), ENV)
    upstream.reply_json({"error": {"message": "boom"}}, status=502, times=2)
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert raw.headers["x-turnout-attempts"] == "3"
    assert len(upstream.requests) == 3


def test_retry_after_is_honoured_before_trying_again(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_openai_doc(upstream), ENV)
    upstream.reply_json(
        {"error": {"message": "slow down", "type": "rate_limit_error"}},
        status=429,
        headers={"Retry-After": "1"},
    )
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert raw.headers["x-turnout-attempts"] == "2"
    assert deployment_state(gateway, "up/gpt-4o")["state"] == "closed"


def test_a_retry_after_longer_than_allowed_is_answered_not_waited_for(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_openai_doc(upstream), ENV)
    upstream.reply_json({"error": {"message": "quota"}}, status=429, headers={"Retry-After": "60"})
    with sdk(gateway) as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="chat", messages=USER)
    assert caught.value.response.headers["retry-after"] == "60"
    assert deployment_state(gateway, "up/gpt-4o")["state"] == "cooling_down"
    with sdk(gateway) as client, pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model="chat", messages=USER)  # still cooling down: not sent
    assert unavailable.value.status_code == 503
    assert len(upstream.requests) == 1


def _openai_doc(upstream: Upstream, **routing: Any) -> dict[str, Any]:
    return {
        "routing": {"retries": {"backoff_base": "10ms"}, **routing},
        "providers": {
            "up": {"type": "openai_compatible", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"}
        },
        "models": {"chat": {"provider": "up", "model": "gpt-4o"}},
    }


# --------------------------------------------------------------------------- breakers


def test_the_breaker_opens_and_the_failing_deployment_is_skipped(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway(
        fake_doc(TWO, "alpha", "beta", routing={"breaker": {"consecutive_failures": 2, "open_for": "30s"}})
    )
    attempts = [served_by(gateway)[1] for _ in range(5)]
    assert attempts == [2, 2, 1, 1, 1]
    assert upstream_calls(gateway, "alpha") == 2
    state = deployment_state(gateway, "alpha")
    assert state["state"] == "open" and state["retry_in_s"] > 25


def test_a_deployment_whose_streams_break_after_their_first_chunk_opens_its_breaker(
    start_gateway: Callable[..., Gateway],
) -> None:
    """A stream is judged when it ends: one that broke mid-answer is a failure, not a success (its
    first chunk) and then a failure, which never made a streak and kept the deployment in use."""
    models = {
        "chat": {
            "targets": [
                {"provider": "alpha", "model": "m?fail=truncate&after=2", "name": "alpha"},
                {"provider": "beta", "model": "m", "name": "beta"},
            ]
        }
    }
    breaker = {"consecutive_failures": 3, "min_requests": 1000, "open_for": "60s"}
    gateway = start_gateway(fake_doc(models, "alpha", "beta", routing={"breaker": breaker}))
    with sdk(gateway) as client:
        for _ in range(6):
            stream = client.chat.completions.create(model="chat", messages=USER, stream=True)
            chunks = [c for c in stream if c.choices]
            assert chunks[-1].choices[0].finish_reason == "stop"  # continued on beta, whole
    assert upstream_calls(gateway, "alpha") == 3
    state = deployment_state(gateway, "alpha")
    assert (state["state"], state["opened"]) == ("open", 1)
    assert deployment_state(gateway, "beta")["successes"] == 6


def test_when_every_breaker_is_open_the_likeliest_deployment_is_still_tried(
    start_gateway: Callable[..., Gateway],
) -> None:
    models = {
        "chat": {
            "targets": [
                {"provider": "alpha", "model": "m?fail=500", "name": "alpha"},
                {"provider": "beta", "model": "m?fail=503", "name": "beta"},
            ]
        }
    }
    gateway = start_gateway(
        fake_doc(models, "alpha", "beta", routing={"breaker": {"consecutive_failures": 1, "open_for": "7s"}})
    )
    with sdk(gateway, retries=2) as client, pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="chat", messages=USER)
    headers = failed.value.response.headers
    assert headers["x-turnout-attempts"] == "3" and headers["x-should-retry"] == "false"
    # the SDK obeyed x-should-retry: three upstream attempts in all (alias attempts), not 3 x 3
    assert upstream_calls(gateway, "alpha") + upstream_calls(gateway, "beta") == 3
    assert deployment_state(gateway, "alpha")["state"] == "open"
    # both breakers open: the providers are still asked (panic routing), never a 503 of turnout's own
    with sdk(gateway) as client, pytest.raises(openai.APIStatusError) as again:
        client.chat.completions.create(model="chat", messages=USER)
    assert again.value.status_code != 503 or again.value.body["code"] != "no_upstream_available"  # type: ignore[index]
    assert upstream_calls(gateway, "alpha") + upstream_calls(gateway, "beta") > 3
    with httpx.Client() as http:
        assert http.get(gateway.root_url + "/health/live").status_code == 200


def test_a_sole_deployment_that_recovers_serves_at_once_though_its_breaker_is_open(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(
        _openai_doc(upstream, breaker={"consecutive_failures": 2, "open_for": "60s"}), ENV
    )
    upstream.reply_json({"error": {"message": "boom"}}, status=500, times=3)
    with sdk(gateway) as client, pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="chat", messages=USER)
    assert deployment_state(gateway, "up/gpt-4o")["state"] == "open"
    with sdk(gateway) as client:  # the provider serves again: so does turnout, 60 s early
        answer = client.chat.completions.create(model="chat", messages=USER)
    assert answer.choices[0].message.content


def test_a_sole_deployment_failing_a_third_of_its_requests_still_serves_through_turnout(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_openai_doc(upstream), ENV)
    for i in range(200):  # 30% failures, spread: 3 of every 10
        if i % 10 in (1, 4, 7):
            upstream.reply_json({"error": {"message": "flaky"}}, status=500)
        else:
            upstream.reply_fixture("chat_completion.json")
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "chat", "messages": USER}
    with httpx.Client(timeout=30) as http:
        statuses = [
            http.post(gateway.base_url + "/chat/completions", json=body, headers=headers).status_code
            for _ in range(60)
        ]
    assert 503 not in statuses  # turnout never refuses by itself
    assert statuses.count(200) >= 42  # at least the 70% the provider answers (retries make it more)


def test_a_429_storm_cools_the_deployment_down_but_never_opens_its_breaker(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_openai_doc(upstream, breaker={"consecutive_failures": 2}), ENV)
    upstream.reply_json(
        {"error": {"message": "slow down", "type": "rate_limit_error"}},
        status=429,
        headers={"retry-after-ms": "20"},
        times=12,
    )
    refused: list[str] = []
    with sdk(gateway) as client:
        while len(refused) < 12:
            try:
                answer = client.chat.completions.create(model="chat", messages=USER)
                break
            except openai.RateLimitError as error:  # the provider's 429, passed on with its wait
                refused.append(error.response.headers["retry-after"])
    assert (
        len(refused) >= 3 and set(refused) == {"1"} and answer.choices[0].message.content
    )  # served as soon as the storm ended
    assert len(upstream.requests) == 13
    assert deployment_state(gateway, "up/gpt-4o")["opened"] == 0


def test_bad_upstream_credentials_move_on_and_are_never_repeated_on_the_same_deployment(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_openai_doc(upstream), ENV)
    upstream.reply_json({"error": {"message": "bad key"}}, status=401, times=5)
    with sdk(gateway) as client, pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="chat", messages=USER)
    assert failed.value.status_code == 502  # an operator's problem, not the client's key
    assert len(upstream.requests) == 1


def test_retries_stay_within_the_budget_when_everything_fails(start_gateway: Callable[..., Gateway]) -> None:
    models = {
        "chat": {
            "attempts": 4,
            "targets": [
                {"provider": "alpha", "model": "m?fail=500", "name": "alpha"},
                {"provider": "beta", "model": "m?fail=500", "name": "beta"},
            ],
        }
    }
    routing = {
        "breaker": NO_BREAKER,
        "retries": {"budget_ratio": 0.1, "budget_per_second": 0, "backoff_base": "1ms"},
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta", routing=routing))
    with sdk(gateway) as client:
        for _ in range(60):
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="chat", messages=USER)
    attempts = upstream_calls(gateway, "alpha") + upstream_calls(gateway, "beta")
    assert 60 < attempts <= 60 + 6  # one each, plus at most 10% of the requests as retries


# --------------------------------------------------------------------------- steering


def test_a_request_can_pin_a_deployment(start_gateway: Callable[..., Gateway]) -> None:
    models = {
        "chat": {
            "targets": [
                {"provider": "alpha", "model": "m", "name": "alpha"},
                {"provider": "beta", "model": "m", "name": "beta"},
            ]
        }
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta"))
    assert served_by(gateway, {"x-turnout-deployment": "beta"})[0] == "beta"
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="chat", messages=USER, extra_headers={"x-turnout-deployment": "gamma"}
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "unknown_deployment"
    assert "alpha, beta" in caught.value.message


def test_tags_keep_a_request_to_the_deployments_that_carry_them(
    start_gateway: Callable[..., Gateway],
) -> None:
    models = {
        "chat": {
            "strategy": "weighted",
            "targets": [
                {"provider": "alpha", "model": "m", "name": "us-1", "tags": ["us"]},
                {"provider": "beta", "model": "m", "name": "eu-1", "tags": ["eu", "gdpr"]},
            ],
        }
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta"))
    assert {served_by(gateway, {"x-turnout-tags": "eu, gdpr"})[0] for _ in range(8)} == {"eu-1"}
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", messages=USER, extra_headers={"x-turnout-tags": "apac"})


def test_weighted_spreads_requests_by_weight(start_gateway: Callable[..., Gateway]) -> None:
    models = {
        "chat": {
            "strategy": "weighted",
            "targets": [
                {"provider": "alpha", "model": "m", "name": "alpha", "weight": 3},
                {"provider": "beta", "model": "m", "name": "beta", "weight": 1},
            ],
        }
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta"))
    served = [served_by(gateway)[0] for _ in range(80)]
    assert 45 <= served.count("alpha") <= 75  # 60 expected; far outside only if weights were ignored


# --------------------------------------------------------------------------- fallback chains


def test_a_fallback_alias_serves_when_every_deployment_fails(start_gateway: Callable[..., Gateway]) -> None:
    models = {
        "chat": {"provider": "alpha", "model": "m?fail=500", "fallbacks": ["backup"], "attempts": 1},
        "backup": {"provider": "beta", "model": "m"},
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta", routing={"breaker": NO_BREAKER}))
    deployment, attempts, completion = served_by(gateway)
    assert (deployment, attempts) == ("beta/m", 2)
    assert completion.choices[0].message.content == ANSWER


def test_a_fallback_that_cannot_serve_the_request_is_skipped(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    doc = {
        "routing": {"breaker": NO_BREAKER, "retries": {"attempts": 1}},
        "providers": {
            "alpha": {"type": "fake"},
            # DeepSeek has no structured outputs (json_schema)
            "deepseek": {"type": "deepseek", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
        },
        "models": {
            "chat": {"provider": "alpha", "model": "m?fail=500", "fallbacks": ["cheap"]},
            "cheap": {"provider": "deepseek", "model": "deepseek-chat"},
        },
    }
    gateway = start_gateway(doc, ENV)
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    with sdk(gateway) as client, pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="chat", messages=USER, response_format=schema)  # type: ignore[arg-type]
    assert upstream.requests == []
    assert served_by(gateway)[0] == "deepseek/deepseek-chat"  # plain requests still fall back


CONTEXT_ERROR = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. "
        "However, your messages resulted in 9000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


def test_a_request_too_long_for_its_model_goes_to_the_context_window_fallback(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    doc = {
        "providers": {
            "small": {
                "type": "openai_compatible",
                "base_url": upstream.base_url,
                "api_key": "env:UPSTREAM_KEY",
            },
            "big": {"type": "fake"},
        },
        "models": {
            "chat": {
                "provider": "small",
                "model": "gpt-4",
                "context_window_fallbacks": ["long"],
                "fallbacks": [],
            },
            "long": {"provider": "big", "model": "m", "context_window": 200000},
        },
    }
    gateway = start_gateway(doc, ENV)
    upstream.reply_json(CONTEXT_ERROR, status=400)
    deployment, attempts, completion = served_by(gateway)
    assert (deployment, attempts) == ("big/m", 2)
    assert completion.choices[0].message.content == ANSWER
    # without such a chain the provider's 400 reaches the client as it was
    plain = {**doc, "models": {"chat": {"provider": "small", "model": "gpt-4"}}}
    other = start_gateway(plain, ENV)
    upstream.reply_json(CONTEXT_ERROR, status=400)
    with sdk(other) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=USER)
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "context_length_exceeded"


# --------------------------------------------------------------------------- hedging


def test_a_hedged_request_is_answered_by_the_first_deployment_to_respond(
    start_gateway: Callable[..., Gateway],
) -> None:
    models = {
        "chat": {
            "hedge_after": "100ms",
            "targets": [
                {"provider": "alpha", "model": "m?latency=20s", "name": "slow"},
                {"provider": "beta", "model": "m", "name": "fast"},
            ],
        }
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta"))
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert raw.headers["x-turnout-deployment"] == "fast"
    assert raw.headers["x-turnout-hedged"] == "true"
    assert raw.parse().choices[0].message.content == ANSWER
    assert deployment_state(gateway, "slow")["in_flight"] == 0  # the loser was cancelled


# --------------------------------------------------------------------------- streams after the first byte


def _resume_doc(failure: str, **alias: Any) -> dict[str, Any]:
    models = {
        "chat": {
            "targets": [
                {"provider": "alpha", "model": f"m?{failure}", "name": "alpha"},
                {"provider": "beta", "model": "m", "name": "beta"},
            ],
            **alias,
        }
    }
    return fake_doc(models, "alpha", "beta", routing={"breaker": NO_BREAKER})


@pytest.mark.parametrize("failure", ["fail=truncate&after=3", "fail=malformed&after=4", "fail=reset&after=2"])
def test_a_stream_cut_mid_answer_continues_on_the_next_deployment(
    start_gateway: Callable[..., Gateway], failure: str
) -> None:
    gateway = start_gateway(_resume_doc(failure))
    body = {"model": "chat", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    headers, events = raw_stream(gateway, body)
    assert headers["x-turnout-stream-resume"] == "enabled"
    assert events[-1] == b"[DONE]" and events.count(b"[DONE]") == 1
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1  # one stream, whoever wrote it
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == ANSWER  # not a character lost or repeated
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishing) == 1 and finishing[0]["choices"][0]["finish_reason"] == "stop"
    resumed = finishing[0]["x_turnout"]["resumed"]
    assert resumed[0]["from"] == "alpha" and resumed[0]["to"] == "beta"
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    roles = [ch["delta"].get("role") for c in chunks for ch in c["choices"] if ch["delta"].get("role")]
    assert roles == ["assistant"]


def test_the_sdk_reads_a_resumed_stream_as_one_answer(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(_resume_doc("fail=truncate&after=5"))
    with sdk(gateway) as client:
        stream = client.chat.completions.create(model="chat", messages=USER, stream=True)
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER


def test_without_resumption_a_cut_stream_ends_with_an_error_event(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway(_resume_doc("fail=truncate&after=3", stream_resume=False))
    with sdk(gateway) as client, pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="chat", messages=USER, stream=True):
            assert not chunk.choices or chunk.choices[0].finish_reason is None  # never a fake stop
    assert not isinstance(caught.value, openai.APIStatusError)


def test_a_tool_call_cut_mid_stream_is_not_resumed(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(_resume_doc("fail=truncate&after=2"))
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]
    with sdk(gateway) as client, pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="chat", messages=USER, tools=tools, stream=True):  # type: ignore[arg-type]
            assert not chunk.choices or chunk.choices[0].finish_reason is None
    assert upstream_calls(gateway, "beta") == 0


# --------------------------------------------------------------------------- chaos


@pytest.fixture
def pair() -> Iterator[tuple[Upstream, Upstream]]:
    a, b = Upstream().start(), Upstream().start()
    yield a, b
    a.stop()
    b.stop()


# Each scenario: after how many finished requests upstream `a` starts behaving how ("refused"
# stops its server, "restart:<mode>" starts it again on the same port). It recovers ("ok") for the
# last part of the run.
SCENARIOS = {
    "every-way": [(30, "500"), (70, "refused"), (110, "restart:hang"), (150, "cut"), (175, "ok")],
    "429-storm": [(30, "429"), (150, "ok")],
    "malformed-sse": [(30, "malformed"), (150, "ok")],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_clients_do_not_notice_an_upstream_failing_under_load(
    pair: tuple[Upstream, Upstream], start_gateway: Callable[..., Gateway], scenario: str
) -> None:
    """200 requests, 20 at a time, half of them streams, while one of two upstreams fails — 500s,
    refused connections, hangs, cut streams, a 429 storm with Retry-After, malformed SSE — and then
    recovers: no client request fails, the breaker opens, and traffic returns to the upstream."""
    a, b = pair
    # first_byte: long enough for a loaded 2-core CI machine, short enough to fail over from a hang
    quick = {"first_byte": "2s", "idle": "2s", "total": "10s"}
    doc = {
        "routing": {"breaker": {"consecutive_failures": 3, "open_for": "1s", "close_after": 1}},
        "providers": {
            name: {
                "type": "openai_compatible",
                "base_url": u.base_url,
                "api_key": "env:UPSTREAM_KEY",
                "timeouts": quick,
            }
            for name, u in (("a", a), ("b", b))
        },
        "models": {
            "chat": {
                "strategy": "weighted",
                "targets": [
                    {"provider": "a", "model": "gpt-4o", "name": "a"},
                    {"provider": "b", "model": "gpt-4o", "name": "b"},
                ],
            }
        },
    }
    gateway = start_gateway(doc, ENV)
    phases = dict(SCENARIOS[scenario])
    restarted: list[Upstream] = []
    lock = threading.Lock()
    done = 0
    opened_before_recovery: list[int] = []

    def a_now() -> Upstream:
        return restarted[-1] if restarted else a

    def advance() -> None:
        nonlocal done
        with lock:
            done += 1
            change = phases.get(done)
            if change == "ok":
                opened_before_recovery.append(deployment_state(gateway, "a")["opened"])
            if change == "refused":
                a.stop()  # connections refused from now on
            elif change is not None and change.startswith("restart:"):
                restarted.append(Upstream(port=a.port, mode=change.removeprefix("restart:")).start())
            elif change is not None:
                a_now().mode = change

    failures: list[str] = []

    def one(i: int) -> None:
        try:
            with sdk(gateway) as client:
                if i % 2:
                    stream = client.chat.completions.create(model="chat", messages=USER, stream=True)
                    chunks = [c for c in stream if c.choices]
                    assert "".join(c.choices[0].delta.content or "" for c in chunks)
                    assert chunks[-1].choices[0].finish_reason == "stop"
                else:
                    completion = client.chat.completions.create(model="chat", messages=USER)
                    assert completion.choices[0].message.content
        except Exception as error:  # every failure is collected and reported below
            failures.append(f"request {i}: {error!r}")
        finally:
            advance()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        list(pool.map(one, range(200)))
    try:
        assert failures == []
        if scenario == "429-storm":  # busy is not broken: cooled down as asked, never ejected
            assert opened_before_recovery[0] == 0
        else:
            assert opened_before_recovery[0] >= 1  # the breaker opened while a was failing
        # a recovered: traffic returns to it and its breaker closes
        seen = len(a_now().requests)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            served_by(gateway)
            if len(a_now().requests) > seen and deployment_state(gateway, "a")["state"] == "closed":
                break
        assert deployment_state(gateway, "a")["state"] == "closed"
        assert len(a_now().requests) > seen
    finally:
        for u in restarted:
            u.stop()


def test_an_active_check_lets_probes_through_before_the_cool_down_ends(
    start_gateway: Callable[..., Gateway],
) -> None:
    breaker = {"consecutive_failures": 1, "open_for": "5m", "max_open_for": "1h"}
    gateway = start_gateway(
        fake_doc(TWO, "alpha", "beta", routing={"breaker": breaker, "health_check_interval": "1h"})
    )
    served_by(gateway)  # alpha fails once: its breaker opens for five minutes
    assert deployment_state(gateway, "alpha")["state"] == "open"
    checks = gateway.services.health_checks
    assert checks is not None and gateway.loop is not None
    # the fake provider lists its models (the check is free), so the deployment may be probed now
    recovered = asyncio.run_coroutine_threadsafe(checks.check_once(), gateway.loop).result(10)
    assert recovered == 1
    assert deployment_state(gateway, "alpha")["retry_in_s"] == 0
    served_by(gateway)  # the probe goes to alpha, which still fails: open again, for twice as long
    state = deployment_state(gateway, "alpha")
    assert state["state"] == "open" and state["retry_in_s"] > 590


def test_a_deployment_at_its_token_capacity_is_skipped(start_gateway: Callable[..., Gateway]) -> None:
    models = {
        "chat": {
            "targets": [
                {"provider": "alpha", "model": "m", "name": "alpha", "tpm": 10},
                {"provider": "beta", "model": "m", "name": "beta"},
            ]
        }
    }
    gateway = start_gateway(fake_doc(models, "alpha", "beta"))
    assert served_by(gateway)[0] == "alpha"  # its answer's tokens fill alpha's minute
    assert [served_by(gateway)[0] for _ in range(3)] == ["beta", "beta", "beta"]
