"""What an upstream says in its errors reaches the client without where upstreams live: URLs, IP
addresses, internal host names and the configured providers' own hosts are replaced by a neutral
placeholder, in JSON answers and in-stream error events, on every inbound API. The server log keeps
the message as it came (credentials redacted), with the request id."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trustme

from turnout.observability.redaction import HIDDEN

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.upstream import Upstream, sse_events

USER: Any = [{"role": "user", "content": "hi"}]
LEAKY = "model 'llama-70b' not found at http://10.0.3.7:8000/v1 (vllm-gpu-3.corp.internal)"
INTERNALS = ("10.0.3.7", "8000/v1", "vllm-gpu-3", "corp.internal", "http://")


def _clean(text: str) -> None:
    for internal in INTERNALS:
        assert internal not in text, text


def _logged(caplog: pytest.LogCaptureFixture, request_id: str) -> None:
    """The original message is in the log, with the request id."""
    assert any(request_id in r.getMessage() and "10.0.3.7" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


def _openai_error(message: str, status: int = 400) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    doc = openai_doc(upstream)
    doc["providers"]["claude"] = {
        "type": "anthropic",
        "base_url": upstream.base_url,
        "api_key": "env:UPSTREAM_KEY",
    }
    doc["models"]["claude"] = {"provider": "claude", "model": "claude-sonnet-4-5-20250929"}
    return start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def test_an_upstream_400_reaches_the_sdk_without_internal_addresses(
    client: openai.OpenAI, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.reply_json(_openai_error(LEAKY), status=400)
    with caplog.at_level(logging.INFO), pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    _clean(caught.value.response.text)
    assert (
        caught.value.response.json()["error"]["message"]
        == f"model 'llama-70b' not found at {HIDDEN} ({HIDDEN})"
    )
    _logged(caplog, caught.value.response.headers["x-request-id"])


def test_the_type_param_and_code_an_upstream_names_are_cleaned_too(
    client: openai.OpenAI, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    leaky = "http://10.0.3.7:8000/v1"
    body = {
        "error": {"message": LEAKY, "type": leaky, "param": leaky, "code": "vllm-gpu-3.corp.internal:8000"}
    }
    upstream.reply_json(body, status=400)
    with caplog.at_level(logging.INFO), pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    _clean(caught.value.response.text)
    error = caught.value.response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (HIDDEN, HIDDEN, HIDDEN)
    _logged(caplog, caught.value.response.headers["x-request-id"])
    # and in a stream
    upstream.reply_sse([*sse_events("chat_stream.sse")[:2], f"data: {json.dumps(body)}\n\n".encode()])
    with httpx.Client(timeout=20) as http:
        response = http.post(
            gateway_url(client) + "/chat/completions",
            json={"model": "gpt-4o", "messages": USER, "stream": True},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        )
    assert response.status_code == 200
    _clean(response.text)


def gateway_url(client: openai.OpenAI) -> str:
    return str(client.base_url).rstrip("/")


def test_the_configured_upstreams_own_address_is_hidden(client: openai.OpenAI, upstream: Upstream) -> None:
    own = f"upstream at 127.0.0.1:{upstream.port} and [::1]:{upstream.port} is not serving 'x'; see localhost"
    upstream.reply_json(_openai_error(own), status=404)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert "127.0.0.1" not in caught.value.response.text
    assert str(upstream.port) not in caught.value.message
    assert "::1" not in caught.value.message and "localhost" not in caught.value.message
    assert "is not serving 'x'" in caught.value.message  # the rest of the message is kept


def test_an_in_stream_error_event_is_cleaned_too(
    gateway: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    error = {"error": {"message": LEAKY, "type": "invalid_request_error", "code": "400"}}
    upstream.reply_sse([*sse_events("chat_stream.sse")[:2], f"data: {json.dumps(error)}\n\n".encode()])
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    with caplog.at_level(logging.INFO), httpx.Client(timeout=20) as http:
        response = http.post(
            gateway.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        )
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    last = json.loads(events[-1])
    assert last["error"]["message"] == f"model 'llama-70b' not found at {HIDDEN} ({HIDDEN})"
    _clean(response.text)
    _logged(caplog, response.headers["x-request-id"])


def test_the_responses_api_relays_the_cleaned_message(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reply_json(_openai_error(LEAKY), status=400)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o", input="hi")
    _clean(caught.value.response.text)
    assert HIDDEN in caught.value.message


def test_the_messages_api_relays_the_cleaned_message_and_event(
    claude: anthropic.Anthropic, upstream: Upstream
) -> None:
    anthropic_error = {"type": "error", "error": {"type": "invalid_request_error", "message": LEAKY}}
    upstream.reply_json(anthropic_error, status=400)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="claude", max_tokens=20, messages=USER)
    _clean(caught.value.response.text)
    assert HIDDEN in caught.value.message
    events = sse_events("stream_text.sse", "anthropic")[:3]
    upstream.reply_sse([*events, f"event: error\ndata: {json.dumps(anthropic_error)}\n\n".encode()])
    with httpx.Client(timeout=20) as http:
        response = http.post(
            str(claude.base_url).rstrip("/") + "/v1/messages",
            json={"model": "claude", "max_tokens": 20, "messages": USER, "stream": True},
            headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
        )
    assert "event: error" in response.text and HIDDEN in response.text
    _clean(response.text)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_does_not_name_the_upstream(start_gateway: Callable[..., Gateway]) -> None:
    port = _closed_port()
    doc = openai_doc(Upstream(port=port))
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    client = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    with client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.status_code == 502
    assert "127.0.0.1" not in caught.value.response.text and str(port) not in caught.value.response.text


def test_a_certificate_for_another_host_does_not_name_the_upstream(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    upstream = Upstream(ssl_context=context).start()
    try:
        doc = openai_doc(upstream, tls_ca_file=str(ca_file))
        doc["providers"]["up"]["base_url"] = f"https://localhost:{upstream.port}/v1"
        gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
        client = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)
        with client, pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=USER)
    finally:
        upstream.stop()
    assert caught.value.status_code == 502 and "certificate" in caught.value.message
    assert "localhost" not in caught.value.response.text
    assert str(upstream.port) not in caught.value.response.text
