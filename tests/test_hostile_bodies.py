"""Well-formed but hostile bodies get a 4xx in the API's own error format, never a 500, and never
reach an upstream: nesting past turnout's limit (on every inbound API, towards every wire format),
numbers that do not fit, a Content-Type that is not JSON (415), absurd durations and oversized
metadata in the admin API, and answers longer than the model can give."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from turnout.config.loader import ConfigError
from turnout.domain.json_body import MAX_DEPTH
from turnout.providers.config_loader import build_settings

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.spec import validate_openai
from support.upstream import Upstream, fixture_bytes

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    servers = {name: Upstream().start() for name in ("openai", "anthropic", "gemini")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def gateway(upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    key = "env:UPSTREAM_KEY"
    doc = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "up": {"type": "openai_compatible", "base_url": upstreams["openai"].base_url, "api_key": key},
            "oai": {"type": "openai", "base_url": upstreams["openai"].base_url, "api_key": key},
            "claude": {"type": "anthropic", "base_url": upstreams["anthropic"].base_url, "api_key": key},
            "google": {"type": "gemini", "base_url": upstreams["gemini"].base_url, "api_key": key},
            "fake": {"type": "fake"},
        },
        "models": {
            "gpt-4o": {"provider": "up", "model": "gpt-4o-2024-08-06"},
            "embed": {"provider": "up", "model": "text-embedding-3-small"},
            "claude": {"provider": "claude", "model": "claude-sonnet-4-5-20250929"},
            "gemini": {"provider": "google", "model": "gemini-2.5-flash"},
            "real-gpt-4o": {"provider": "oai", "model": "gpt-4o-2024-08-06"},
            "real-gpt-5.1": {"provider": "oai", "model": "gpt-5.1"},
            "real-gpt-3.5-turbo": {"provider": "oai", "model": "gpt-3.5-turbo"},
            "short-and-long": {
                "targets": [
                    {"provider": "fake", "model": "short", "name": "short", "max_output_tokens": 1000},
                    {"provider": "fake", "model": "long", "name": "long"},
                ]
            },
            "capped": {
                "targets": [
                    {"provider": "fake", "model": "a", "name": "a", "max_output_tokens": 1000},
                    {"provider": "fake", "model": "b", "name": "b", "max_output_tokens": 2000},
                ]
            },
        },
    }
    data = tmp_path_factory.mktemp("hostile-bodies")
    server = Gateway(settings_for(doc, data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    with httpx.Client(base_url=gateway.root_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def _sent(upstreams: dict[str, Upstream]) -> int:
    return sum(len(u.requests) for u in upstreams.values())


def _openai_error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    validate_openai("ErrorResponse", body)
    error: dict[str, Any] = body["error"]
    return error


def _anthropic_error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    error: dict[str, Any] = body["error"]
    return error


def _nest(depth: int) -> bytes:
    """A JSON value `depth` containers deep."""
    return (
        b'{"a":' * (depth // 2)
        + b"[" * (depth - depth // 2)
        + b"1"
        + b"]" * (depth - depth // 2)
        + b"}" * (depth // 2)
    )


def _tool_body(model: str, depth: int) -> bytes:
    """A chat request whose tool parameters nest so that the whole body is `depth` deep."""
    # body > tools > tool > function > parameters > properties: five levels above the value
    return b'{"model":"%s","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function",' % (
        model.encode()
    ) + b'"function":{"name":"f","parameters":{"type":"object","properties":%s}}}]}' % _nest(depth - 5)


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize("model", ["claude", "gemini", "gpt-4o"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 254, 255, 600, 1023, 1100])
def test_nesting_past_the_limit_is_a_400_naming_it_towards_every_wire_format(
    http: httpx.Client, upstreams: dict[str, Upstream], model: str, depth: int
) -> None:
    before = _sent(upstreams)
    error = _openai_error(http.post("/v1/chat/completions", content=_tool_body(model, depth)))
    assert error["type"] == "invalid_request_error" and error["code"] == "json_too_deep"
    assert str(MAX_DEPTH) in error["message"]
    assert error["param"] in ("tools", None)  # named when the decoder got that far
    assert _sent(upstreams) == before


def test_nesting_up_to_the_limit_is_carried_to_anthropic_and_gemini(
    http: httpx.Client, upstreams: dict[str, Upstream]
) -> None:
    upstreams["anthropic"].reply_json(fixture_bytes("message.json", "anthropic"))
    assert http.post("/v1/chat/completions", content=_tool_body("claude", MAX_DEPTH)).status_code == 200
    upstreams["gemini"].reply_json(fixture_bytes("generate_content.json", "gemini"))
    assert http.post("/v1/chat/completions", content=_tool_body("gemini", MAX_DEPTH)).status_code == 200


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 1100])
def test_every_inbound_api_refuses_nesting_past_the_limit(
    http: httpx.Client, upstreams: dict[str, Upstream], depth: int
) -> None:
    deep = _nest(depth)
    before = _sent(upstreams)
    for path, body in [
        ("/v1/embeddings", b'{"model":"embed","input":"hi","x_vendor":%s}' % deep),
        ("/v1/responses", b'{"model":"gemini","input":"hi","metadata":%s}' % deep),
    ]:
        assert _openai_error(http.post(path, content=body))["code"] == "json_too_deep"
    body = (
        b'{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata":%s}' % deep
    )
    error = _anthropic_error(http.post("/v1/messages", content=body))
    assert error["type"] == "invalid_request_error" and str(MAX_DEPTH) in error["message"]
    assert _sent(upstreams) == before


# --------------------------------------------------------------------------- numbers


def test_a_number_beyond_a_double_is_a_clear_400(http: httpx.Client, upstreams: dict[str, Upstream]) -> None:
    before = _sent(upstreams)
    for number in (b"1e400", b"-1e400"):
        raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":%s}' % number
        error = _openai_error(http.post("/v1/chat/completions", content=raw))
        assert error["code"] == "number_out_of_range" and "out of range" in error["message"]
        raw = b'{"model":"claude","max_tokens":%s,"messages":[{"role":"user","content":"hi"}]}' % number
        assert "out of range" in _anthropic_error(http.post("/v1/messages", content=raw))["message"]
        # not JSON anyway (cut short): that is what the client is told
        raw = b'{"model":"gpt-4o","temperature":%s' % number
        assert _openai_error(http.post("/v1/chat/completions", content=raw))["code"] == "invalid_json"
    assert _sent(upstreams) == before


def test_integers_beyond_64_bits_are_refused_naming_the_parameter(
    http: httpx.Client, upstreams: dict[str, Upstream]
) -> None:
    before = _sent(upstreams)
    for number in (b"123456789012345678901234567890", b"-9223372036854775809", b"18446744073709551615"):
        raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":%s}' % number
        error = _openai_error(http.post("/v1/chat/completions", content=raw))
        assert error["param"] == "max_tokens"
        assert "64 bits" in error["message"] or "9223372036854775807" in error["message"]
        raw = b'{"model":"gpt-4o","input":"hi","max_output_tokens":%s}' % number
        error = _openai_error(http.post("/v1/responses", content=raw))
        assert error["param"] == "max_output_tokens" and "64 bits" in error["message"]
    assert _sent(upstreams) == before


# --------------------------------------------------------------------------- Content-Type

NOT_JSON = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/html"]


@pytest.mark.parametrize("content_type", NOT_JSON)
def test_a_body_that_says_it_is_not_json_is_a_415_in_each_apis_format(
    http: httpx.Client, upstreams: dict[str, Upstream], content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    before = _sent(upstreams)
    for path, body in [
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": USER}),
        ("/v1/embeddings", {"model": "embed", "input": "hi"}),
        ("/v1/responses", {"model": "gpt-4o", "input": "hi"}),
        ("/admin/keys", {"name": "k"}),
    ]:
        error = _openai_error(http.post(path, content=orjson.dumps(body), headers=headers), 415)
        assert error["code"] == "unsupported_media_type"
        assert content_type.split(";")[0] in error["message"]
    body = {"model": "claude", "max_tokens": 5, "messages": USER}
    error = _anthropic_error(http.post("/v1/messages", content=orjson.dumps(body), headers=headers), 415)
    assert error["type"] == "invalid_request_error" and "application/json" in error["message"]
    assert _sent(upstreams) == before


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8", "application/vnd.api+json"]
)
def test_json_bodies_are_accepted_with_any_json_type_or_none(
    gateway: Gateway, upstreams: dict[str, Upstream], content_type: str | None
) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    with httpx.Client(base_url=gateway.root_url, headers=headers, timeout=30) as bare:
        raw = orjson.dumps({"model": "gpt-4o", "messages": USER})
        assert bare.post("/v1/chat/completions", content=raw).status_code == 200
        assert bare.post("/admin/keys", content=orjson.dumps({"name": "typed"})).status_code == 200


def test_an_empty_form_post_to_a_bodyless_admin_action_still_works(http: httpx.Client) -> None:
    key = http.post("/admin/keys", json={"name": "to revoke"}).json()
    # what `curl -X POST -d ''` sends: a form type with nothing in it
    revoked = http.post(
        f"/admin/keys/{key['id']}/revoke",
        content=b"",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert revoked.status_code == 200, revoked.text


# --------------------------------------------------------------------------- the admin API


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "k", "expires_in": "99999999999d"}, "expires_in"),
        ({"name": "k", "expires_in": "9" * 400 + "s"}, "expires_in"),
        ({"name": "k", "expires_in": "36501d"}, "expires_in"),
        ({"name": "k", "max_budget": "1e400"}, "max_budget"),
        ({"name": "k", "max_budget": "99999999999999999999"}, "max_budget"),
        (
            {"name": "k", "metadata": {"team": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}},
            "metadata",
        ),
        ({"name": "k", "metadata": {"blob": "x" * 20_000}}, "metadata"),
        ({"name": "k", "metadata": {f"k{i}": i for i in range(300)}}, "metadata"),
    ],
)
def test_absurd_key_settings_are_a_400_naming_the_field(
    http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    error = _openai_error(http.post("/admin/keys", json=body))
    assert error["param"] == param, error


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"name":"k","limits":{"rpm":99999999999999999999999}}', "limits.rpm"),
        (b'{"name":"k","limits":{"tpm":-9223372036854775809}}', "limits.tpm"),
        (b'{"name":"k","limits":{"rpm":1e400}}', None),
        (b'{"name":"k","metadata":%s}' % _nest(300), "metadata"),
        (b'{"name":"k","metadata":%s}' % _nest(2000), None),
    ],
)
def test_numbers_and_nesting_an_admin_body_cannot_hold_are_a_400(
    http: httpx.Client, raw: bytes, param: str | None
) -> None:
    error = _openai_error(http.post("/admin/keys", content=raw))
    assert error["param"] == param, error
    assert error["code"] in ("number_out_of_range", "json_too_deep")


def test_a_changed_key_and_a_rotation_refuse_absurd_durations_too(http: httpx.Client) -> None:
    key = http.post("/admin/keys", json={"name": "k"}).json()
    error = _openai_error(http.patch(f"/admin/keys/{key['id']}", json={"expires_in": "99999999999d"}))
    assert error["param"] == "expires_in" and "100 years" in error["message"]
    error = _openai_error(http.post(f"/admin/keys/{key['id']}/rotate", json={"grace": "99999999999d"}))
    assert error["param"] == "grace" and "100 years" in error["message"]
    error = _openai_error(http.patch(f"/admin/keys/{key['id']}", json={"metadata": {"x": "y" * 20_000}}))
    assert error["param"] == "metadata"
    assert http.patch(f"/admin/keys/{key['id']}", json={"metadata": {"owner": "me"}}).status_code == 200


def test_team_metadata_is_bounded(http: httpx.Client) -> None:
    deep: Any = "leaf"
    for _ in range(20):
        deep = {"x": deep}
    for metadata in (deep, {"blob": "x" * 20_000}):
        assert _openai_error(http.post("/admin/teams", json={"name": "t", "metadata": metadata}))[
            "param"
        ] == ("metadata")
    error = _openai_error(http.post("/admin/teams", content=b'{"name":"t","metadata":%s}' % _nest(300)))
    assert error["param"] == "metadata"
    assert http.post("/admin/teams", json={"name": "t", "metadata": {"cost_center": "42"}}).status_code == 200


def test_absurd_amounts_of_money_are_a_400(http: httpx.Client) -> None:
    team = http.post("/admin/teams", json={"name": "money"}).json()
    for amount in ("1e400", "1e999999999", "10000000000000"):
        budget = {"scope": "team", "subject_id": team["id"], "limit": amount}
        assert _openai_error(http.post("/admin/budgets", json=budget))["param"] == "limit"


def test_durations_in_the_configuration_are_bounded(tmp_path: Path) -> None:
    for value in ("99999999999d", "9" * 400 + "s"):
        doc = {
            "providers": {"fake": {"type": "fake"}},
            "models": {"m": {"provider": "fake", "model": "m"}},
            "routing": {"hedge_after": value},
            "storage": {"data_dir": str(tmp_path)},
        }
        with pytest.raises(ConfigError) as caught:
            build_settings(doc, {"TURNOUT_MASTER_KEY": MASTER_KEY}, source="turnout.yaml")
        assert any("routing.hedge_after" in p and "100 years" in p for p in caught.value.problems)


# --------------------------------------------------------------------------- answers too long for the model


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("real-gpt-4o", 16_384),
        ("real-gpt-5.1", 128_000),  # OpenAI's model page: 128,000 max output tokens
        ("real-gpt-3.5-turbo", 4_096),  # OpenAI's model page: 4,096 max output tokens
    ],
)
def test_max_tokens_beyond_the_price_tables_limit_is_a_400_naming_it(
    client: openai.OpenAI, upstreams: dict[str, Upstream], model: str, limit: int
) -> None:
    """A request for more than the model's documented output limit is refused before the provider
    is asked, whichever parameter asks; one for exactly that goes through."""
    before = _sent(upstreams)
    for param in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=model, messages=USER, **{param: limit + 1})  # type: ignore[call-overload]
        assert caught.value.param == param and str(limit) in caught.value.message
    assert _sent(upstreams) == before
    upstreams["openai"].reply_fixture("chat_completion.json")
    done = client.chat.completions.create(model=model, messages=USER, max_tokens=limit)  # type: ignore[arg-type]
    assert done.choices[0].message.content


def test_a_deployment_that_cannot_give_so_long_an_answer_is_skipped(client: openai.OpenAI) -> None:
    short = client.chat.completions.with_raw_response.create(
        model="short-and-long", messages=USER, max_tokens=10
    )  # type: ignore[arg-type]
    assert short.headers["x-turnout-deployment"] == "short"  # first by priority
    long = client.chat.completions.with_raw_response.create(
        model="short-and-long",
        messages=USER,  # type: ignore[arg-type]
        max_tokens=5000,
    )
    assert long.headers["x-turnout-deployment"] == "long"


def test_no_deployment_long_enough_names_the_largest_limit_on_every_api(
    client: openai.OpenAI, claude: anthropic.Anthropic, upstreams: dict[str, Upstream]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="capped", messages=USER, max_tokens=3000)  # type: ignore[arg-type]
    assert caught.value.param == "max_tokens" and "2000" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="capped", input="hi", max_output_tokens=3000)
    assert caught.value.param == "max_output_tokens" and "2000" in caught.value.message
    before = _sent(upstreams)
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="claude", max_tokens=100_000, messages=USER)  # type: ignore[arg-type]
    assert "max_tokens" in refused.value.message and "64000" in refused.value.message
    assert _sent(upstreams) == before


def test_anthropics_required_max_tokens_is_lowered_for_models_that_write_less(
    claude: anthropic.Anthropic,
) -> None:
    # Claude Code asks for its Claude model's most (32000+); an alias with no Anthropic deployment
    # gets the most its deployments can give instead of a 400 the user cannot act on
    raw = claude.messages.with_raw_response.create(model="capped", max_tokens=100_000, messages=USER)  # type: ignore[arg-type]
    assert raw.headers["x-turnout-deployment"] == "b"  # the one that can write 2000; "a" only 1000
    assert raw.parse().stop_reason == "end_turn"


def test_a_configured_max_output_tokens_is_validated(tmp_path: Path) -> None:
    doc = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"m": {"provider": "fake", "model": "m", "max_output_tokens": 0}},
        "storage": {"data_dir": str(tmp_path)},
    }
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, {"TURNOUT_MASTER_KEY": MASTER_KEY}, source="turnout.yaml")
    assert any(
        p.startswith("models.m.max_output_tokens") and "at least 1" in p for p in caught.value.problems
    ), caught.value.problems
