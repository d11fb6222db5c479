"""An error a provider reports inside a stream, before its first chunk, reaches the client exactly as
the same error over HTTP would, whatever the wire format: the provider refusing turnout's key is a
502 `upstream_auth_error` (never the client's 401), its rate limit a 429, a bad request the
provider's 400, and a content-policy refusal goes to the alias's content-policy fallback. Real
upstreams on 127.0.0.1, a real gateway, the official OpenAI SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.upstream import Upstream

ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
USER = [{"role": "user", "content": "Hello!"}]


def doc(upstream: Upstream, wire: str, **model: Any) -> dict[str, Any]:
    return {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "up": {"type": wire, "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
            "spare": {"type": "fake"},
        },
        "models": {
            "chat": {"provider": "up", "model": "m", "fallbacks": [], **model},
            "safe": {"provider": "spare", "model": "fake-small"},
        },
    }


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def openai_event(error: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


def anthropic_event(kind: str, message: str) -> bytes:
    error = {"type": "error", "error": {"type": kind, "message": message}}
    return b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"


def gemini_event(code: int, status: str, message: str) -> bytes:
    return (
        b"data: "
        + json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()
        + b"\n\n"
    )


CASES = {
    "openai-auth": (
        "openai_compatible",
        openai_event(
            {"message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "authentication_error"}
        ),
        openai.InternalServerError,
        502,
        "upstream_auth_error",
    ),
    "openai-rate-limit": (
        "openai_compatible",
        openai_event({"message": "Rate limit reached.", "type": "requests", "code": "rate_limit_exceeded"}),
        openai.RateLimitError,
        429,
        "rate_limit_exceeded",
    ),
    "anthropic-auth": (
        "anthropic",
        anthropic_event("authentication_error", "invalid x-api-key"),
        openai.InternalServerError,
        502,
        "upstream_auth_error",
    ),
    "anthropic-permission": (
        "anthropic",
        anthropic_event("permission_error", "Your API key does not have permission to use this model."),
        openai.InternalServerError,
        502,
        "upstream_auth_error",
    ),
    "gemini-auth": (
        "gemini",
        gemini_event(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
        openai.InternalServerError,
        502,
        "upstream_auth_error",
    ),
    "gemini-invalid": (
        "gemini",
        gemini_event(
            400, "INVALID_ARGUMENT", "Unable to submit request because it has an empty text parameter."
        ),
        openai.BadRequestError,
        400,
        None,
    ),
    "gemini-rate-limit": (
        "gemini",
        gemini_event(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        openai.RateLimitError,
        429,
        None,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_error_before_the_first_chunk_is_the_same_error_as_over_http(
    upstream: Upstream, start_gateway: Callable[..., Gateway], case: str
) -> None:
    wire, event, exception, status, code = CASES[case]
    gateway = start_gateway(doc(upstream, wire), ENV)
    upstream.reply_sse([event])
    with sdk(gateway) as client, pytest.raises(exception) as caught:
        client.chat.completions.create(model="chat", messages=USER, stream=True)
    response = caught.value.response
    assert response.status_code == status
    body = response.json()
    assert body["error"]["code"] == code
    assert UPSTREAM_KEY not in response.text and MASTER_KEY not in response.text
    if status == 502:  # the operator's problem, named as such; the client's key is fine
        assert "credentials" in body["error"]["message"]


def test_a_content_policy_error_in_a_stream_goes_to_the_content_policy_fallback(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    filtered = openai_event(
        {
            "message": "The response was filtered due to the prompt triggering the content policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation"},
        }
    )
    gateway = start_gateway(doc(upstream, "openai_compatible", content_policy_fallbacks=["safe"]), ENV)
    upstream.reply_sse([filtered])
    with (
        sdk(gateway) as client,
        client.chat.completions.with_streaming_response.create(
            model="chat", messages=USER, stream=True
        ) as raw,
    ):
        assert raw.headers["x-turnout-deployment"] == "spare/fake-small"
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text
    assert len(upstream.requests) == 1
