"""Pass-through routes (`/passthrough/<provider>/<path>`): a provider's own API through turnout, with
turnout's keys and the provider's credential, only on the paths the configuration allows, never to
an arbitrary URL, and recorded in the ledger (priced from the usage a JSON answer reports)."""

from __future__ import annotations

import http.client
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from turnout.config.loader import ConfigError
from turnout.providers.config_loader import build_settings

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.upstream import Upstream

FILE = {
    "id": "file-abc123",
    "object": "file",
    "bytes": 11,
    "created_at": 1741569952,
    "filename": "batch.jsonl",
    "purpose": "batch",
}
RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "model": "gpt-4o-2024-08-06",
    "output": [],
    "usage": {"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500},
}


def _doc(upstream: Upstream, passthrough: list[str] | None = None) -> dict[str, Any]:
    provider = {
        "type": "openai",
        "base_url": upstream.base_url,
        "api_key": "env:UPSTREAM_KEY",
        "passthrough": passthrough if passthrough is not None else ["/files", "/responses"],
    }
    return {
        "providers": {"up": provider},
        "models": {"chat": {"provider": "up", "model": "gpt-4o"}},
    }


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(_doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})


def _key(gateway: Gateway, **fields: Any) -> str:
    answer = httpx.post(
        gateway.root_url + "/admin/keys",
        json={"name": "pass", **fields},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["key"])


def _sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    """The official SDK pointed at the pass-through as if it were the provider's base URL."""
    return openai.OpenAI(
        base_url=gateway.root_url + "/passthrough/up", api_key=key, max_retries=0, timeout=20
    )


def test_the_sdk_uploads_a_file_through_the_passthrough_with_the_providers_key(
    gateway: Gateway, upstream: Upstream
) -> None:
    key = _key(gateway)
    upstream.reply_json(FILE)
    uploaded = _sdk(gateway, key).files.create(
        file=("batch.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="batch"
    )
    assert uploaded.id == "file-abc123"
    (sent,) = upstream.requests
    assert (sent.method, sent.path) == ("POST", "/v1/files")
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the provider's, never the client's
    assert key not in str(sent.headers)
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'{"a": 1}' in sent.body and b'name="purpose"' in sent.body


def test_a_json_answer_with_usage_is_priced_and_recorded_under_the_providers_passthrough(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    key = _key(gateway)
    upstream.reply_json(RESPONSE)
    answer = httpx.post(
        gateway.root_url + "/passthrough/up/responses",
        json={"model": "gpt-4o", "input": "hi"},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert answer.status_code == 200
    assert answer.json() == RESPONSE  # the provider's answer as it came
    request_id = answer.headers["x-request-id"]
    gateway.stop()
    (row,) = [r for r in ledger_rows(tmp_path / "data0") if r["request_id"] == request_id]
    assert (row["api"], row["alias"], row["provider"], row["model"]) == (
        "passthrough",
        "passthrough/up",
        "up",
        "gpt-4o-2024-08-06",
    )
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (200, 1000, 500)
    # gpt-4o at the shipped price: $2.50 and $10.00 per 1M tokens
    assert row["cost_micros"] == 1000 * 2_500_000 // 1_000_000 + 500 * 10_000_000 // 1_000_000


def test_a_download_streams_through_as_it_came_and_is_recorded_without_tokens(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    key = _key(gateway)
    content = bytes(range(256)) * 4096  # 1 MiB that is not JSON
    upstream.reply_raw(content, content_type="application/octet-stream")
    with httpx.stream(
        "GET",
        gateway.root_url + "/passthrough/up/files/file-abc123/content",
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.read() == content
        request_id = answer.headers["x-request-id"]
    gateway.stop()
    (row,) = [r for r in ledger_rows(tmp_path / "data0") if r["request_id"] == request_id]
    assert (row["api"], row["status"], row["input_tokens"], row["cost_micros"]) == ("passthrough", 200, 0, 0)


def test_an_upstream_error_is_passed_back_as_the_provider_wrote_it_and_recorded(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    key = _key(gateway)
    missing = {"error": {"message": "No such File object: file-x", "type": "invalid_request_error"}}
    upstream.reply_json(missing, status=404)
    answer = httpx.get(
        gateway.root_url + "/passthrough/up/files/file-x",
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert (answer.status_code, answer.json()) == (404, missing)
    gateway.stop()
    rows = [r for r in ledger_rows(tmp_path / "data0") if r["request_id"] == answer.headers["x-request-id"]]
    assert [(r["status"], r["reason"]) for r in rows] == [(404, "passthrough_upstream_error")]


def _raw_get(gateway: Gateway, path: str, key: str) -> tuple[int, bytes]:
    """A request sent with its path exactly as written (no client normalising dot segments)."""
    connection = http.client.HTTPConnection("127.0.0.1", httpx.URL(gateway.root_url).port, timeout=20)
    try:
        connection.request("GET", path, headers={"authorization": f"Bearer {key}"})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/passthrough/up/chat/completions",  # a path the configuration does not allow
        "/passthrough/up/files/../chat/completions",  # dot segments out of an allowed prefix
        "/passthrough/up/files/%2e%2e/chat/completions",
        "/passthrough/up/files%2f..%2fchat/completions",  # an encoded slash
        "/passthrough/up/files/..%5cchat",
        "/passthrough/up//files",
        "/passthrough/up/filesystem",  # a prefix is a whole segment
    ],
)
def test_nothing_but_an_allowed_path_reaches_the_provider(
    gateway: Gateway, upstream: Upstream, path: str
) -> None:
    status, body = _raw_get(gateway, path, _key(gateway))
    assert status == 403, body
    assert b"passthrough_path_not_allowed" in body
    assert upstream.requests == []


def test_a_key_limited_to_some_models_needs_the_passthrough_named(
    gateway: Gateway, upstream: Upstream
) -> None:
    limited = _key(gateway, models=["chat"])
    with pytest.raises(openai.NotFoundError):
        _sdk(gateway, limited).files.list()
    allowed = _key(gateway, models=["chat", "passthrough/up"])
    upstream.reply_json({"object": "list", "data": [FILE], "has_more": False})
    assert [f.id for f in _sdk(gateway, allowed).files.list()] == ["file-abc123"]
    assert len(upstream.requests) == 1


def test_an_unknown_provider_or_one_without_passthrough_is_404(
    gateway: Gateway, upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    key = _key(gateway)
    for path in ("/passthrough/nowhere/files", "/passthrough/up"):
        status, body = _raw_get(gateway, path, key)
        assert status == 404, (path, body)
    closed = start_gateway(_doc(upstream, passthrough=[]), {"UPSTREAM_KEY": UPSTREAM_KEY})
    status, _ = _raw_get(closed, "/passthrough/up/files", MASTER_KEY)
    assert status == 404
    assert upstream.requests == []


def test_a_key_out_of_budget_is_refused_before_the_provider_is_called(
    gateway: Gateway, upstream: Upstream
) -> None:
    key = _key(gateway, max_budget="0.000001")
    upstream.reply_json(RESPONSE)
    first = httpx.post(
        gateway.root_url + "/passthrough/up/responses",
        json={"model": "gpt-4o", "input": "hi"},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert first.status_code == 200  # spends far more than the budget: the next one is refused
    second = httpx.post(
        gateway.root_url + "/passthrough/up/responses",
        json={"model": "gpt-4o", "input": "hi"},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert second.status_code == 429, second.text
    assert len(upstream.requests) == 1


def test_no_key_no_passthrough(gateway: Gateway, upstream: Upstream) -> None:
    assert httpx.get(gateway.root_url + "/passthrough/up/files", timeout=10).status_code == 401
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("prefixes", "problem"),
    [
        (["files"], "passthrough[0]: 'files' is not a path prefix"),
        (["/files/../chat"], "passthrough[0]: '/files/../chat' is not a path prefix"),
        (["/files?x=1"], "passthrough[0]: '/files?x=1' is not a path prefix"),
        (["/files%2f"], "passthrough[0]: '/files%2f' is not a path prefix"),
    ],
)
def test_a_prefix_that_is_not_a_plain_path_is_refused(prefixes: list[str], problem: str) -> None:
    doc = {"providers": {"up": {"type": "openai", "api_key": "env:K", "passthrough": prefixes}}}
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, {"K": "x"}, source="turnout.yaml")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_bedrock_provider_cannot_have_a_passthrough() -> None:
    provider = {
        "type": "bedrock",
        "aws": {"region": "us-east-1", "access_key_id": "env:AK", "secret_access_key": "env:SK"},
        "passthrough": ["/model"],
    }
    with pytest.raises(ConfigError) as caught:
        build_settings({"providers": {"b": provider}}, {"AK": "AKIAIOSFODNN7EXAMPLE", "SK": "x"}, source="t")
    assert any(p.startswith("providers.b.passthrough: not available") for p in caught.value.problems)


def test_a_key_over_its_rpm_is_refused_in_openais_shape_before_the_provider_is_called(
    gateway: Gateway, upstream: Upstream
) -> None:
    key = _key(gateway, limits={"rpm": 1})
    upstream.reply_json({"object": "list", "data": [FILE], "has_more": False})
    with _sdk(gateway, key) as client:
        listed = client.files.with_raw_response.list()
        assert listed.headers["x-ratelimit-limit-requests"] == "1"
        assert listed.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as refused:
            client.files.list()
    error = refused.value
    assert error.code == "rate_limit_exceeded" and "key rpm" in error.message
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(upstream.requests) == 1  # the refused one never reached the provider
