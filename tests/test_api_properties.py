"""Property-based tests of the HTTP API of a real gateway in front of the fake provider.

The documented API: schemathesis reads the live /openapi.json and runs every operation in it
(a route added to the admin router is tested without a change here), with bodies, parameters and
ids that fit the schema and ones that do not, with the master key and with no key. Whatever it
sends, the answer is never a 5xx, its status is documented, its body matches the schema documented
for that status, and a refusal is an OpenAI error. Path ids are drawn from objects the test made
as often as made up, so that the answers for real objects are checked too.

The OpenAI endpoints /v1/chat/completions and /v1/embeddings (documented as OpenAI's own, not
schema by schema): Hypothesis bodies, valid ones and hostile ones (any type in any field, deep
nesting, huge numbers, unicode), through to the fake upstream and back: never a 5xx, and a 4xx is
always an OpenAI error. (tests/test_hostile_input.py checks each verdict against OpenAI's own
spec, with an OpenAI-compatible upstream; here the bodies reach a provider that reads them.)
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from turnout.server.asgi import admin_router
from turnout.server.openapi_responses import ANSWERS

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.upstream import Upstream

WITH_KEY = 30  # examples per operation and generation mode
WITHOUT_KEY = 4
CREDENTIALS = ("authorization", "x-api-key", "api-key")
ERROR_FIELDS = {"message", "type", "param", "code"}

pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)


LONG = int(os.environ.get("TURNOUT_FUZZ_EXAMPLES", "0"))  # a longer, random session (tests/fuzz/README.md)


def budget(examples: int) -> settings:
    return settings(
        max_examples=LONG or examples,
        derandomize=not LONG,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    doc = {
        "providers": {"fake": {"type": "fake"}},
        "models": {
            "chat": {"provider": "fake", "model": "m"},
            "embed": {"provider": "fake", "model": "e"},
            "rerank": {"provider": "fake", "model": "r", "supports": {"rerank": True}},
            "moderation": {"provider": "fake", "model": "o", "supports": {"moderation": True}},
        },
    }
    gateway = Gateway(settings_for(doc, tmp_path_factory.mktemp("api-properties"))).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def known_ids(gateway: Gateway) -> dict[str, list[str]]:
    """Real objects of every kind, made through the API: path parameters are drawn from these
    (by parameter name) as often as made up."""
    with httpx.Client(
        base_url=gateway.root_url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    ) as http:

        def made(path: str, body: dict[str, Any], field: str = "id") -> str:
            answer = http.request(
                "DELETE" if path.startswith("DELETE ") else "POST", path.split()[-1], json=body
            )
            assert answer.status_code in (200, 202), answer.text
            return str(answer.json()[field])

        team = made("/admin/teams", {"name": "properties"})
        user = made("/admin/users", {"email": "someone@example.com"})
        made(f"/admin/teams/{team}/members", {"user_id": user, "role": "member"})
        key = made("/admin/keys", {"name": "properties", "team_id": team})
        budget_id = made(
            "/admin/budgets", {"scope": "team", "subject_id": team, "limit": "5", "period": "daily"}
        )
        made("/admin/plans", {"name": "plan", "prices": {"input": "1", "output": "2"}})
        preset = made("/admin/presets", {"name": "tone", "team_id": team, "model": "chat"}, "name")
        action = made("DELETE /admin/providers/fake", {})  # the two-person rule: a pending action
    return {
        "team_id": [team],
        "user_id": [user],
        "key_id": [key],
        "budget_id": [budget_id],
        "action_id": [action],
        "name": [preset, "fake"],
        "model": ["chat", "embed"],
    }


@pytest.fixture(scope="module")
def schema(gateway: Gateway) -> Any:
    return schemathesis.openapi.from_url(gateway.root_url + "/openapi.json", config=schemathesis.Config())


def error_in_openai_format(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every refusal is an OpenAI error (Anthropic's Messages API answers in Anthropic's own, and
    Cohere's v2 rerank in Cohere's: `{"id", "message"}`)."""
    if response.status_code < 400 or case.operation.path.startswith("/v1/messages"):
        return None
    body = orjson.loads(response.content)
    if case.operation.path == "/v2/rerank":
        assert isinstance(body, dict) and set(body) == {"id", "message"}, response.text[:300]
        assert body["message"], response.text[:300]
        return None
    assert isinstance(body, dict) and set(body.get("error", {})) >= ERROR_FIELDS, response.text[:300]
    return True


def admin_needs_a_key(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Without a key, every admin operation is refused as unauthenticated, whatever else is wrong."""
    if not case.operation.path.startswith("/admin/"):
        return None
    assert response.status_code == 401, f"{response.status_code} without a key: {response.text[:200]}"
    return True


CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    error_in_openai_format,
]


def _last(operation: Any) -> bool:
    """Operations that take objects away run after the others, which may want them."""
    path, method = operation.path, operation.method.upper()
    return method == "DELETE" or path.endswith(("/revoke", "/revoke-keys", "/approve", "/reject"))


Exchange = Callable[[Case, st.DataObject], None]


def _cases(operation: Any, mode: GenerationMode, examples: int) -> Callable[[Exchange], None]:
    """Run an exchange for `examples` cases of `operation` in `mode`."""

    def run(exchange: Exchange) -> None:
        budget(examples)(given(case=operation.as_strategy(generation_mode=mode), data=st.data())(exchange))()

    return run


def _exchange(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    session: requests.Session,
    known_ids: dict[str, list[str]],
    failures: dict[tuple[str, str], str],
    checks: list[Any],
) -> Exchange:
    """Send one case (with `headers` as its only credentials, ids drawn from `known_ids` as often
    as not), check its answer, and note the first failure of each kind for the operation."""

    def exchange(case: Case, data: st.DataObject) -> None:
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in CREDENTIALS}
        for name in list(case.path_parameters or {}):
            if name in known_ids and data.draw(st.booleans()):
                case.path_parameters[name] = data.draw(st.sampled_from(known_ids[name]))
        response = case.call(base_url=base_url, headers=headers, session=session, timeout=30)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                where = (f"{operation.label} [{mode.value}]", failure.title)
                failures.setdefault(
                    where,
                    f"{where[0]}: {failure.title}: {failure.message[:300]}\n    {case.as_curl_command()}",
                )

    return exchange


def _run(
    schema: Any,
    base_url: str,
    headers: dict[str, str],
    known_ids: dict[str, list[str]],
    modes: list[GenerationMode],
    examples: int,
    checks: list[Any],
) -> list[str]:
    """Every operation of `schema`, `examples` cases per mode; the failures, one line each."""
    failures: dict[tuple[str, str], str] = {}
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=_last)
    assert len(operations) > 20
    with requests.Session() as session:
        for operation, mode in itertools.product(operations, modes):
            try:
                _cases(operation, mode, examples)(
                    _exchange(operation, mode, base_url, headers, session, known_ids, failures, checks)
                )
            except Unsatisfiable:  # an operation with nothing to make invalid has no negative cases
                if mode is GenerationMode.POSITIVE:
                    raise
    return list(failures.values())


@pytest.mark.timeout(600)  # every documented operation, many generated cases each: minutes on 2 busy cores
def test_every_documented_operation_with_the_master_key(
    gateway: Gateway, schema: Any, known_ids: dict[str, list[str]]
) -> None:
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    failures = _run(schema, gateway.root_url, auth, known_ids, modes, WITH_KEY, CHECKS)
    assert not failures, "\n".join(failures)


def test_every_documented_operation_without_a_key(
    gateway: Gateway, schema: Any, known_ids: dict[str, list[str]]
) -> None:
    modes = [GenerationMode.POSITIVE]
    failures = _run(schema, gateway.root_url, {}, known_ids, modes, WITHOUT_KEY, [*CHECKS, admin_needs_a_key])
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- the OpenAI endpoints

DEEP = "\x00deep\x00"  # replaced after serialising by a nesting of a drawn depth
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
HUGE_TEXT = st.integers(1, 60_000).map(lambda n: ("\u00e9t\u00e9 \U0001f680 \u202e\u0000" * n)[:n])
NUMBERS = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, -1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, 1e308, 5e-324])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT | HUGE_TEXT | st.just(DEEP)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
DEPTHS = st.sampled_from([2, 50, 100, 200, 253, 254, 255, 256, 300, 400, 600]) | st.integers(1, 700)

PART = st.fixed_dictionaries({"type": st.just("text"), "text": TEXT | HUGE_TEXT}) | st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.fixed_dictionaries({"url": st.just("data:image/png;base64,AA==")}),
    }
)
CALL = st.fixed_dictionaries(
    {
        "id": TEXT,
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": TEXT, "arguments": TEXT}),
    }
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "developer"]), "content": TEXT | HUGE_TEXT}
    ),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(PART, min_size=1, max_size=3)}),
    st.fixed_dictionaries(
        {"role": st.just("assistant")}, optional={"content": TEXT, "tool_calls": st.lists(CALL, max_size=2)}
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "content": TEXT, "tool_call_id": TEXT}),
)
SCHEMA = st.dictionaries(
    st.sampled_from(["type", "properties", "required", "items", "enum", "const"]) | TEXT, JSON, max_size=4
) | st.just({"type": "object", "properties": {"p": DEEP}})
TOOL = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": TEXT}, optional={"parameters": SCHEMA}),
    }
)
CHAT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "n": st.integers(1, 4),
    "max_tokens": st.integers(1, 2**31),
    "stop": TEXT | st.lists(TEXT, max_size=4),
    "logprobs": st.booleans(),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "tools": st.lists(TOOL, max_size=3),
    "tool_choice": st.sampled_from(["none", "auto", "required"]),
    "parallel_tool_calls": st.booleans(),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])})
    | st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries({"name": TEXT, "schema": SCHEMA}),
        }
    ),
    "metadata": st.dictionaries(TEXT, TEXT, max_size=3),
    "user": TEXT,
    "x_vendor": JSON,
}
EMBEDDING_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "encoding_format": st.sampled_from(["float", "base64"]),
    "dimensions": st.integers(1, 2**40),
    "user": TEXT,
    "x_vendor": JSON,
}


Path_ = tuple[Any, ...]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [p for key, value in items for p in [(*prefix, key), *_paths(value, (*prefix, key))]]


@st.composite
def made_hostile(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with up to three edits: any value anywhere replaced by any JSON (deep nesting, huge
    numbers and strings, unicode), or removed."""
    body = copy.deepcopy(body)  # drawn values may be shared with other examples
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.integers(0, 3)):
            parent[path[-1]] = draw(JSON)
        else:
            del parent[path[-1]]
    return body


@st.composite
def encoded(draw: st.DrawFn, body: Any) -> bytes:
    """JSON text of `body` (integers of any size, as a client may write them) with each DEEP
    marker replaced by a nesting of a drawn depth."""
    text = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    marker = json.dumps(DEEP).encode()
    while (at := text.find(marker)) >= 0:
        depth = draw(DEPTHS)
        inner = b'{"a":' * depth + b"1" + b"}" * depth if draw(st.booleans()) else b"[" * depth + b"]" * depth
        text = text[:at] + inner + text[at + len(marker) :]
    return text


@st.composite
def chat_bodies(draw: st.DrawFn) -> bytes:
    body = {
        "model": "chat",
        "messages": draw(st.lists(MESSAGE, min_size=1, max_size=4)),
        "stream": draw(st.booleans()),
    }
    body.update(draw(st.fixed_dictionaries({}, optional=CHAT_FIELDS)))
    return draw(encoded(draw(made_hostile(body))))


@st.composite
def embedding_bodies(draw: st.DrawFn) -> bytes:
    inputs = (
        TEXT
        | HUGE_TEXT
        | st.lists(TEXT, min_size=1, max_size=4)
        | st.lists(st.integers(0, 10**6), min_size=1)
    )
    body = {"model": "embed", "input": draw(inputs)}
    body.update(draw(st.fixed_dictionaries({}, optional=EMBEDDING_FIELDS)))
    return draw(encoded(draw(made_hostile(body))))


DOCUMENT = TEXT | st.fixed_dictionaries({"text": TEXT}, optional={"id": TEXT}) | st.integers()


@st.composite
def rerank_bodies(draw: st.DrawFn) -> bytes:
    body: dict[str, Any] = {
        "model": "rerank",
        "query": draw(TEXT | HUGE_TEXT),
        "documents": draw(
            st.lists(DOCUMENT, max_size=6) | st.lists(st.just("d"), min_size=999, max_size=1002)
        ),
    }
    body.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "top_n": st.integers(-2, 10**20),
                    "return_documents": st.booleans() | TEXT,
                    "max_tokens_per_doc": st.integers(-1, 10**12),
                },
            )
        )
    )
    return draw(encoded(draw(made_hostile(body))))


@st.composite
def moderation_bodies(draw: st.DrawFn) -> bytes:
    part = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "audio"]), "text": TEXT})
    inputs = TEXT | HUGE_TEXT | st.lists(TEXT, max_size=4) | st.lists(part, max_size=3)
    body: dict[str, Any] = {"input": draw(inputs)}
    if draw(st.booleans()):
        body["model"] = draw(st.sampled_from(["moderation", "chat", "nope"]))
    return draw(encoded(draw(made_hostile(body))))


@pytest.fixture(scope="module")
def v1(gateway: Gateway) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as http:
        yield http


def _never_broken(response: httpx.Response) -> None:
    """No 5xx; a refusal is an OpenAI error; an answer is JSON, or a stream without an error event."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS and isinstance(error["message"], str), response.text[:500]
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert b'"error"' not in response.content, response.text[-500:]
        assert response.content.endswith(b"data: [DONE]\n\n"), response.text[-500:]
    else:
        assert isinstance(response.json(), dict)


@budget(800)
@given(body=chat_bodies())
def test_any_chat_body_gets_an_answer_or_an_openai_error(v1: httpx.Client, body: bytes) -> None:
    _never_broken(v1.post("/chat/completions", content=body))


@budget(400)
@given(body=embedding_bodies())
def test_any_embeddings_body_gets_an_answer_or_an_openai_error(v1: httpx.Client, body: bytes) -> None:
    _never_broken(v1.post("/embeddings", content=body))


@budget(300)
@given(body=rerank_bodies())
def test_any_rerank_body_gets_an_answer_or_an_openai_error(v1: httpx.Client, body: bytes) -> None:
    _never_broken(v1.post("/rerank", content=body))


@budget(300)
@given(body=moderation_bodies())
def test_any_moderation_body_gets_an_answer_or_an_openai_error(v1: httpx.Client, body: bytes) -> None:
    _never_broken(v1.post("/moderations", content=body))


# --------------------------------------------------------------------------- bodies a wire format rewrites

TRANSLATING: dict[str, dict[str, Any]] = {
    "anthropic": {"type": "anthropic", "api_key": "env:UPSTREAM_KEY"},
    "gemini": {"type": "gemini", "api_key": "env:UPSTREAM_KEY"},
    "cohere": {"type": "cohere", "api_key": "env:UPSTREAM_KEY"},
    "bedrock": {
        "type": "bedrock",
        "aws": {
            "region": "us-east-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "env:UPSTREAM_KEY",
        },
    },
}


def _nested(depth: int) -> Any:
    value: Any = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"p": value}}
    return value


@pytest.mark.parametrize("wire", sorted(TRANSLATING))
def test_a_body_too_deep_to_rewrite_for_the_provider_is_the_clients_400(
    wire: str, upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    """orjson reads 1024 levels and writes 254: a tool schema in between must not reach a wire format
    that rewrites the body (all but OpenAI's) and fail there with a 500."""
    provider = {
        **TRANSLATING[wire],
        "base_url": upstream.root_url if wire == "bedrock" else upstream.base_url,
    }
    doc = {"providers": {"up": provider}, "models": {"m": {"provider": "up", "model": "some-model"}}}
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    tool = {"type": "function", "function": {"name": "f", "parameters": _nested(150)}}  # 300 levels of JSON
    with httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
        response = http.post(
            "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]},
        )
    assert response.status_code == 400, response.text[:300]
    # refused at the edge (turnout reads 128 levels at most), or by the adapter that rewrites it
    assert response.json()["error"]["code"] in ("json_too_deep", "invalid_json")
    assert upstream.requests == []


def test_a_tool_input_too_deep_to_rewrite_is_refused_in_anthropics_format(gateway: Gateway) -> None:
    blocks = [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": _nested(150)}]
    body = {
        "model": "chat",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": blocks}],
    }
    response = httpx.post(
        gateway.base_url + "/messages", json=body, headers={"x-api-key": MASTER_KEY}, timeout=30
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["type"] == "error"


def test_the_fake_refuses_more_dimensions_than_any_model_gives(v1: httpx.Client) -> None:
    """The fake upstream answers in the gateway's own event loop: a billion dimensions asked for
    would stall every other request while it computed them."""
    response = v1.post("/embeddings", json={"model": "embed", "input": "hi", "dimensions": 10**9})
    assert response.status_code == 400, response.text[:300]
    assert "dimensions" in response.json()["error"]["message"]
    assert (
        v1.post("/embeddings", json={"model": "embed", "input": "hi", "dimensions": 3072}).status_code == 200
    )


def test_every_documented_answer_belongs_to_a_route(gateway: Gateway, schema: Any) -> None:
    """What server/openapi_responses.py says a route answers is keyed by method and path: a route
    renamed or removed must not leave its answer documented for nothing."""
    routes = {(route.method, route.path) for route in admin_router(gateway.services).routes}
    assert set(ANSWERS) <= routes, sorted(set(ANSWERS) - routes)
    documented = schema.raw_schema["paths"]
    for method, path in ANSWERS:
        content = documented[path][method.lower()]["responses"]["200"]["content"]  # JSON, or JSON lines
        assert content and all(kind["schema"] for kind in content.values()), (method, path)


@pytest.mark.parametrize(
    "query", ["/admin/budgets?scope=", "/admin/audit?limit=", "/admin/approvals?status="]
)
def test_a_blank_query_value_is_refused_like_any_value_off_its_schema(gateway: Gateway, query: str) -> None:
    """Found by schemathesis: `?scope=` listed every budget, as if no scope had been given."""
    answer = httpx.get(
        gateway.root_url + query, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    )
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"]["param"] == query.rsplit("?", 1)[1].rstrip("=")
