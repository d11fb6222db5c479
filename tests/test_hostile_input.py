"""Hostile request bodies against a real gateway: whatever arrives, turnout answers in OpenAI's error
format, never with a 5xx, and never lets an invalid request reach the upstream.

OpenAI's published schema is the oracle: a body it rejects (type, required field, range) must get
a 4xx without an upstream call; a body it accepts must be forwarded (the test upstream answers
with a fixture). turnout's documented exceptions are honoured by `_chat_verdict`: unknown top-level
fields and unknown user content-part types travel to the upstream as vendor extensions, and the
enumerations providers extend often are checked for their type only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc, settings_for
from support.spec import is_valid_openai, openai_components, validate_openai
from support.upstream import Upstream

CHAT = "/chat/completions"
EMBEDDINGS = "/embeddings"
CHAT_MODEL = "gpt-4o"
EMBEDDING_MODEL = "embed"

HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
# A failing example may hold a huge string: its report is long, which is no reason to fail differently.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)

# --------------------------------------------------------------------------- the HTTP side


class Line:
    """A client's line to the gateway, watching what reaches the upstream (its repr is kept short:
    Hypothesis prints it with every falsifying example)."""

    def __init__(self, http: httpx.Client, upstream: Upstream) -> None:
        self.http = http
        self.upstream = upstream

    def __repr__(self) -> str:
        return "Line()"

    def post(self, path: str, raw: bytes) -> tuple[httpx.Response, int]:
        """POST `raw` as JSON; returns the answer and how many requests reached the upstream meanwhile."""
        before = len(self.upstream.requests)
        response = self.http.post(path, content=raw, headers={"Content-Type": "application/json"})
        return response, len(self.upstream.requests) - before

    def sent(self) -> Any:
        return self.upstream.requests[-1].json


@contextlib.contextmanager
def _serving(data_dir: Path, **server: Any) -> Iterator[tuple[Gateway, Upstream]]:
    upstream = Upstream().start()
    doc = {**openai_doc(upstream), "server": server}
    gateway = Gateway(settings_for(doc, data_dir, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    try:
        yield gateway, upstream
    finally:
        gateway.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Upstream]]:
    """One gateway and upstream for the whole module: every check counts the upstream's requests
    before and after, so the examples do not disturb one another."""
    with _serving(tmp_path_factory.mktemp("hostile")) as pair:
        yield pair


@pytest.fixture(scope="module")
def line(served: tuple[Gateway, Upstream]) -> Iterator[Line]:
    gateway, upstream = served
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as http:
        yield Line(http, upstream)


def _assert_api_error(response: httpx.Response) -> dict[str, Any]:
    """An OpenAI-format error with a 4xx status; returns its `error` object."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    assert 400 <= response.status_code < 500, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    validate_openai("ErrorResponse", body)
    return body["error"]


def _check_refused(response: httpx.Response, reached_upstream: int) -> dict[str, Any]:
    error = _assert_api_error(response)
    assert reached_upstream == 0, "an invalid request was sent to the upstream"
    return error


def _check_forwarded(response: httpx.Response, reached_upstream: int) -> None:
    assert response.status_code == 200, f"a request the spec accepts was refused: {response.text[:500]}"
    assert reached_upstream == 1


def _check_never_broken(response: httpx.Response, reached_upstream: int) -> None:
    """What holds for every body: no 5xx, an OpenAI error when refused, no upstream call then."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code == 200:
        assert reached_upstream == 1
    else:
        _check_refused(response, reached_upstream)


# --------------------------------------------------------------------------- the oracle


def _spec_fields(name: str) -> frozenset[str]:
    schemas = openai_components()["components"]["schemas"]
    fields: set[str] = set()
    pending = [schemas[name]]
    while pending:
        node = pending.pop()
        if "$ref" in node:
            pending.append(schemas[node["$ref"].rsplit("/", 1)[-1]])
        fields.update(node.get("properties", {}))
        pending.extend(node.get("allOf", []))
    return frozenset(fields)


# Spec fields turnout does not model yet: like any unknown field, they travel to the upstream unchecked.
_NOT_MODELLED = frozenset({"moderation", "prompt_cache_options"})
CHAT_FIELDS = _spec_fields("CreateChatCompletionRequest") - _NOT_MODELLED
EMBEDDING_FIELDS = _spec_fields("CreateEmbeddingRequest")

# Enumerations providers extend often: turnout checks only that they are strings (documented).
EXTENDED_ENUMS = {
    "service_tier": "auto",
    "reasoning_effort": "low",
    "verbosity": "low",
    "prompt_cache_retention": "24h",
}
USER_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file"})


_MAPS = frozenset({"logit_bias", "metadata"})  # objects whose values are data, not optional fields


def _without_nulls(node: Any, key: object = None) -> Any:
    """turnout reads an optional field set to null as absent, as OpenAI's API does. (The one field
    the spec both requires and lets be null, a function message's `content`, keeps its null.)"""
    if isinstance(node, dict):
        return {
            k: _without_nulls(v, k)
            for k, v in node.items()
            if v is not None or key in _MAPS or (k == "content" and node.get("role") == "function")
        }
    if isinstance(node, list):
        return [_without_nulls(v) for v in node]
    return node


def _spec_accepts(schema: str, body: Any) -> bool:
    return is_valid_openai(schema, body) or is_valid_openai(schema, _without_nulls(body))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _breaks_documented_rule(body: dict[str, Any]) -> bool:
    """Rules OpenAI states in the parameters' descriptions (and its API enforces), not in the schema."""
    bias = body.get("logit_bias")
    if isinstance(bias, dict) and any(_is_int(v) and not -100 <= v <= 100 for v in bias.values()):
        return True  # "an associated bias value from -100 to 100"
    if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
        return True  # "`logprobs` must be set to `true` if this parameter is used"
    # OpenAI answers "integer below minimum value" for these; turnout does the same.
    return any(_is_int(body.get(name)) and body[name] < 1 for name in ("max_tokens", "max_completion_tokens"))


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _parts(body: dict[str, Any], role: str | None = None) -> list[dict[str, Any]]:
    return [
        p
        for m in _messages(body)
        if role is None or m.get("role") == role
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, dict)
    ]


def _known_gap(body: dict[str, Any]) -> str | None:
    """Places where turnout is more lenient than the spec. Missing required fields and ranges are
    reported as bugs and pinned one by one below (`test_spec_invalid_bodies_are_refused_...`); the
    enumerations of audio formats and image detail are left unchecked like the documented ones,
    maybe on purpose (reported, not pinned). The properties leave all of them out so that they keep
    testing everything else."""
    functions = body.get("functions")
    if isinstance(functions, list) and not 1 <= len(functions) <= 128:
        return "functions length"
    if isinstance(body.get("safety_identifier"), str) and len(body["safety_identifier"]) > 64:
        return "safety_identifier length"
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("allowed_tools"), dict):
        return "allowed_tools content"
    tools = body.get("tools")
    if isinstance(tools, list) and any(
        isinstance(t, dict) and isinstance(t.get("custom"), dict) and "format" in t["custom"] for t in tools
    ):
        return "custom tool format"
    if isinstance(body.get("web_search_options"), dict):
        return "web_search_options content"
    prediction = body.get("prediction")
    if isinstance(prediction, dict) and isinstance(prediction.get("content"), list):
        return "prediction content parts"
    audio = body.get("audio")
    if isinstance(audio, dict):
        if _unlisted(audio.get("format"), {"wav", "aac", "mp3", "flac", "opus", "pcm16"}):
            return "audio format"
        voice = audio.get("voice")
        if isinstance(voice, dict) and not (set(voice) == {"id"} and isinstance(voice["id"], str)):
            return "audio voice object"
    for part in _parts(body):
        image, sound = part.get("image_url"), part.get("input_audio")
        if isinstance(image, dict) and _unlisted(image.get("detail"), {"auto", "low", "high"}):
            return "image detail"
        if isinstance(sound, dict) and _unlisted(sound.get("format"), {"wav", "mp3"}):
            return "input_audio format"
    return None


def _unlisted(value: Any, allowed: set[str]) -> bool:
    """A string outside a documented enumeration (which turnout does not check)."""
    return isinstance(value, str) and value not in allowed


def _chat_verdict(body: Any) -> bool | None:
    """Whether turnout must accept `body` (True), refuse it (False), or may do either (None: one of
    turnout's documented exceptions, or a gap pinned by its own test)."""
    if not isinstance(body, dict):
        return False
    if isinstance(body.get("model"), str) and body["model"] != CHAT_MODEL:
        return None  # another model name: a 404 (or 400 for an unprintable name), tested on its own
    if any(isinstance(p.get("type"), str) and p["type"] not in USER_PART_TYPES for p in _parts(body, "user")):
        event("oracle: unknown user content part (vendor extension)")
        return None
    if (gap := _known_gap(body)) is not None:
        event(f"oracle: known gap ({gap})")
        return None
    normal = {k: v for k, v in body.items() if k in CHAT_FIELDS}  # unknown fields pass through
    for name, value in EXTENDED_ENUMS.items():
        if isinstance(normal.get(name), str):
            normal[name] = value
    modalities = normal.get("modalities")
    if isinstance(modalities, list) and all(isinstance(m, str) for m in modalities):
        normal["modalities"] = ["text"]
    accepted = _spec_accepts("CreateChatCompletionRequest", normal) and not _breaks_documented_rule(normal)
    event(f"oracle: spec {'accepts' if accepted else 'rejects'}")
    return accepted


def _embedding_verdict(body: Any) -> bool | None:
    if not isinstance(body, dict):
        return False
    if isinstance(body.get("model"), str) and body["model"] != EMBEDDING_MODEL:
        return None
    normal = {k: v for k, v in body.items() if k in EMBEDDING_FIELDS}  # unknown fields pass through
    accepted = _spec_accepts("CreateEmbeddingRequest", normal)
    event(f"oracle: spec {'accepts' if accepted else 'rejects'}")
    return accepted


def _check_against_oracle(response: httpx.Response, reached: int, verdict: bool | None) -> None:
    _check_never_broken(response, reached)
    if verdict is True:
        _check_forwarded(response, reached)
    elif verdict is False:
        _check_refused(response, reached)


# --------------------------------------------------------------------------- generators

# Integral floats (2.0) are left out: JSON Schema counts them as integers, OpenAI's API does not
# ("expected an integer, but got a decimal number"), and neither does turnout.
FLOATS = st.floats(min_value=-1e15, max_value=1e15).map(lambda x: x + 0.5 if x.is_integer() else x)
INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=12)
HUGE_TEXT = st.integers(min_value=10_000, max_value=400_000).map(lambda n: "\u00e9\U0001f680x" * (n // 3))
BOUNDARY_NUMBERS = st.sampled_from(
    [-101, -100, -3, -2.0000001, -2, -1, -1e-9, 0, 1e-9, 0.5, 1, 1.0000001, 2, 2.0000001, 3, 20, 21,
     100, 101, 127, 128, 129, 2049, 2**31, 2**63 - 1, -(2**63), 5e-324, -1.5e-300]
)  # fmt: skip
NUMBERS = INTS | FLOATS | BOUNDARY_NUMBERS
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
HOSTILE = JSON | HUGE_TEXT | NUMBERS | st.sampled_from([[], {}, [None], [[]], [{}], ""])


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _content(part: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return TEXT | st.lists(part, min_size=1, max_size=3)


TEXT_PART = st.fixed_dictionaries({"type": st.just("text"), "text": TEXT})
USER_PART = (
    TEXT_PART
    | st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries(
                {"url": st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo="])},
                optional={"detail": st.sampled_from(["auto", "low", "high"])},
            ),
        }
    )
    | st.fixed_dictionaries(
        {
            "type": st.just("input_audio"),
            "input_audio": st.fixed_dictionaries({"data": TEXT, "format": st.sampled_from(["wav", "mp3"])}),
        }
    )
    | st.fixed_dictionaries(
        {"type": st.just("file"), "file": _optional(filename=TEXT, file_data=TEXT, file_id=TEXT)}
    )
)
ASSISTANT_PART = TEXT_PART | st.fixed_dictionaries({"type": st.just("refusal"), "refusal": TEXT})
TOOL_CALL = st.fixed_dictionaries(
    {
        "id": TEXT,
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": TEXT, "arguments": TEXT}),
    }
) | st.fixed_dictionaries(
    {"id": TEXT, "type": st.just("custom"), "custom": st.fixed_dictionaries({"name": TEXT, "input": TEXT})}
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer"]), "content": _content(TEXT_PART)},
        optional={"name": TEXT},
    ),
    st.fixed_dictionaries({"role": st.just("user"), "content": _content(USER_PART)}, optional={"name": TEXT}),
    st.fixed_dictionaries(
        {"role": st.just("assistant")},
        optional={
            "content": st.none() | _content(ASSISTANT_PART),
            "refusal": st.none() | TEXT,
            "name": TEXT,
            "audio": st.fixed_dictionaries({"id": TEXT}),
            "tool_calls": st.lists(TOOL_CALL, max_size=2),
            "function_call": st.fixed_dictionaries({"name": TEXT, "arguments": TEXT}),
        },
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "content": _content(TEXT_PART), "tool_call_id": TEXT}),
    st.fixed_dictionaries({"role": st.just("function"), "content": st.none() | TEXT, "name": TEXT}),
)
SCHEMA_OBJECT = st.dictionaries(TEXT, JSON, max_size=3)
FUNCTION = st.fixed_dictionaries(
    {"name": TEXT},
    optional={"description": TEXT, "parameters": SCHEMA_OBJECT, "strict": st.none() | st.booleans()},
)
LEGACY_FUNCTION = st.fixed_dictionaries(
    {"name": TEXT}, optional={"description": TEXT, "parameters": SCHEMA_OBJECT}
)
TOOL = st.fixed_dictionaries({"type": st.just("function"), "function": FUNCTION}) | st.fixed_dictionaries(
    {
        "type": st.just("custom"),
        "custom": st.fixed_dictionaries({"name": TEXT}, optional={"description": TEXT}),
    }
)
NAMED = st.fixed_dictionaries({"name": TEXT})
OPTIONAL_CHAT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.none() | st.booleans(),
    "stream_options": st.none() | _optional(include_usage=st.booleans(), include_obfuscation=st.booleans()),
    "temperature": st.none() | st.floats(0, 2) | st.integers(0, 2),
    "top_p": st.none() | st.floats(0, 1),
    "n": st.none() | st.integers(1, 128),
    "stop": st.none() | TEXT | st.lists(TEXT, min_size=1, max_size=4),
    "max_tokens": st.none() | st.integers(1, 2**31),
    "max_completion_tokens": st.none() | st.integers(1, 2**31),
    "presence_penalty": st.none() | st.floats(-2, 2),
    "frequency_penalty": st.none() | st.floats(-2, 2),
    "logit_bias": st.none()
    | st.dictionaries(st.from_regex(r"\A[0-9]{1,6}\Z"), st.integers(-100, 100), max_size=3),
    "logprobs": st.none() | st.booleans(),
    "user": TEXT,
    "safety_identifier": st.none() | st.text(max_size=64),
    "seed": st.none() | INTS,
    "tools": st.lists(TOOL, max_size=3),
    "tool_choice": st.sampled_from(["none", "auto", "required"])
    | st.fixed_dictionaries({"type": st.just("function"), "function": NAMED})
    | st.fixed_dictionaries({"type": st.just("custom"), "custom": NAMED}),
    "parallel_tool_calls": st.booleans(),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])})
    | st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries(
                {"name": TEXT},
                optional={"description": TEXT, "schema": SCHEMA_OBJECT, "strict": st.none() | st.booleans()},
            ),
        }
    ),
    "functions": st.lists(LEGACY_FUNCTION, min_size=1, max_size=3),
    "function_call": st.sampled_from(["none", "auto"]) | NAMED,
    "metadata": st.none() | st.dictionaries(TEXT, TEXT, max_size=3),
    "store": st.none() | st.booleans(),
    "service_tier": st.none() | st.sampled_from(["auto", "default", "flex", "priority"]),
    "reasoning_effort": st.none() | st.sampled_from(["minimal", "low", "medium", "high"]),
    "verbosity": st.none() | st.sampled_from(["low", "medium", "high"]),
    "modalities": st.none() | st.lists(st.sampled_from(["text", "audio"]), max_size=2),
    "prediction": st.none() | st.fixed_dictionaries({"type": st.just("content"), "content": TEXT}),
    "prompt_cache_key": st.none() | TEXT,
    "prompt_cache_retention": st.none() | st.sampled_from(["in_memory", "24h"]),
    "audio": st.none()
    | st.fixed_dictionaries(
        {
            "voice": TEXT | st.fixed_dictionaries({"id": TEXT}),
            "format": st.sampled_from(["wav", "aac", "mp3", "flac", "opus", "pcm16"]),
        }
    ),
}


@st.composite
def valid_chat_requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": CHAT_MODEL, "messages": draw(st.lists(MESSAGE, min_size=1, max_size=4))}
    body.update(draw(_optional(**OPTIONAL_CHAT_FIELDS)))
    if body.get("logprobs") is True and draw(st.booleans()):
        body["top_logprobs"] = draw(st.integers(0, 20))
    return body


VALID_EMBEDDING_INPUT = (
    TEXT
    | st.lists(TEXT, min_size=1, max_size=5)
    | st.lists(st.integers(0, 100_000), min_size=1, max_size=5)
    | st.lists(st.lists(st.integers(0, 100_000), min_size=1, max_size=4), min_size=1, max_size=3)
)


@st.composite
def valid_embedding_requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": EMBEDDING_MODEL, "input": draw(VALID_EMBEDDING_INPUT)}
    body.update(
        draw(
            _optional(
                encoding_format=st.sampled_from(["float", "base64"]),
                dimensions=st.integers(1, 4096),
                user=TEXT,
            )
        )
    )
    return body


JsonPath = tuple[str | int, ...]


def _paths(node: Any, prefix: JsonPath = ()) -> list[JsonPath]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found: list[JsonPath] = []
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


def _containers(node: Any, prefix: JsonPath = ()) -> list[JsonPath]:
    """Paths of every object in `node` (the root too)."""
    found = [prefix] if isinstance(node, dict) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found += _containers(value, (*prefix, key))
    return found


def _at(node: Any, path: JsonPath) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated(
    draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]], top_level: frozenset[str], most: int = 3
) -> dict[str, Any]:
    """A valid request with up to `most` hostile edits: a value replaced by another of any type (or a
    huge string, or a number at or beyond a documented bound), a field removed, a known top-level
    field added with a hostile value, or an unknown field added somewhere (an extension)."""
    body = copy.deepcopy(draw(valid))  # copies throughout: sampled constants are shared between examples
    for _ in range(draw(st.integers(1, most))):
        kind = draw(st.sampled_from(["replace", "replace", "delete", "add-known", "add-unknown"]))
        paths = _paths(body)
        if kind == "replace" and paths:
            path = draw(st.sampled_from(paths))
            _at(body, path[:-1])[path[-1]] = copy.deepcopy(draw(HOSTILE))
        elif kind == "delete" and paths:
            path = draw(st.sampled_from(paths))
            del _at(body, path[:-1])[path[-1]]
        elif kind == "add-known":
            body[draw(st.sampled_from(sorted(top_level)))] = copy.deepcopy(draw(HOSTILE))
        elif kind == "add-unknown":
            target = _at(body, draw(st.sampled_from(_containers(body))))
            target["x-" + draw(TEXT)] = copy.deepcopy(draw(JSON))
    return body


# --------------------------------------------------------------------------- properties: chat


@HYPOTHESIS
@given(body=JSON)
def test_any_json_value_as_a_chat_request_is_refused_cleanly(line: Line, body: Any) -> None:
    response, reached = line.post(CHAT, orjson.dumps(body))
    _check_against_oracle(response, reached, _chat_verdict(body))


@HYPOTHESIS
@given(body=valid_chat_requests())
def test_every_request_the_spec_accepts_is_forwarded(line: Line, body: Any) -> None:
    assert _chat_verdict(body) is not False, "the generator made a request the spec rejects"
    response, reached = line.post(CHAT, orjson.dumps(body))
    _check_forwarded(response, reached)
    sent = line.sent()
    for name, value in body.items():  # forwarded faithfully (turnout may only add stream_options)
        if name not in ("model", "stream_options"):
            assert sent[name] == value, name


@settings(HYPOTHESIS, max_examples=300)
@given(body=mutated(valid_chat_requests(), CHAT_FIELDS))
def test_chat_verdict_matches_the_openai_spec(line: Line, body: Any) -> None:
    response, reached = line.post(CHAT, orjson.dumps(body))
    _check_against_oracle(response, reached, _chat_verdict(body))


@HYPOTHESIS
@given(
    body=mutated(valid_chat_requests(), CHAT_FIELDS, most=1), model=TEXT | st.from_regex(r"\A[!-~]{1,40}\Z")
)
def test_an_unknown_model_never_reaches_the_upstream(line: Line, body: dict[str, Any], model: str) -> None:
    body["model"] = "no-such-" + model
    response, reached = line.post(CHAT, orjson.dumps(body))
    _check_refused(response, reached)


# --------------------------------------------------------------------------- properties: embeddings


@HYPOTHESIS
@given(body=JSON)
def test_any_json_value_as_an_embeddings_request_is_refused_cleanly(line: Line, body: Any) -> None:
    response, reached = line.post(EMBEDDINGS, orjson.dumps(body))
    _check_against_oracle(response, reached, _embedding_verdict(body))


@settings(HYPOTHESIS, max_examples=300)
@given(body=mutated(valid_embedding_requests(), EMBEDDING_FIELDS))
def test_embeddings_verdict_matches_the_openai_spec(line: Line, body: Any) -> None:
    response, reached = line.post(EMBEDDINGS, orjson.dumps(body))
    _check_against_oracle(response, reached, _embedding_verdict(body))


# --------------------------------------------------------------------------- properties: bytes

INVALID_UTF8 = st.sampled_from(
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80"]
)
NOT_QUITE_JSON = st.sampled_from(
    [b"", b" ", b"{", b"}", b"[", b"{'model': 'gpt-4o'}", b'{"model": "gpt-4o",}', b'{"a": NaN}',
     b'{"a": Infinity}', b'{"a": 1e400}', b'{"a": -1e400}', b'{"a": 01}', b"// comment\n{}", b'{"a" 1}',
     b'{"a": "\\ud800"}', b'{"a": "\\x41"}', b'{"a": "tab\there"}', b"\xef\xbb\xbf{}", b"\x00", b"nul",
     b'{"model": "gpt-4o"} {"model": "gpt-4o"}', b'{"a": [1, 2}', b'"unterminated']
)  # fmt: skip


@st.composite
def corrupted(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A valid request's bytes, truncated, with bytes spliced in, or with invalid UTF-8 in a string."""
    raw = orjson.dumps(draw(valid))
    at = draw(st.integers(0, len(raw)))
    how = draw(st.sampled_from(["truncate", "splice", "utf8-in-string"]))
    if how == "truncate":
        return raw[:at]
    if how == "splice":
        return raw[:at] + draw(st.binary(min_size=1, max_size=4) | INVALID_UTF8 | NOT_QUITE_JSON) + raw[at:]
    quote = raw.find(b'"', at)
    quote = raw.find(b'"') if quote < 0 else quote
    return raw[: quote + 1] + draw(INVALID_UTF8) + raw[quote + 1 :]


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
@HYPOTHESIS
@given(raw=st.binary(max_size=200) | NOT_QUITE_JSON | corrupted(valid_chat_requests()))
def test_bytes_that_are_not_json_are_refused_before_the_upstream(line: Line, raw: bytes, path: str) -> None:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        parses = False
    else:
        parses = True
    event(f"body parses as JSON: {parses}")
    response, reached = line.post(path, raw)
    if parses:
        _check_never_broken(response, reached)
        return
    error = _check_refused(response, reached)
    assert response.status_code == 400
    # JSON but for a number beyond a double (1e400) is told as such; anything else is invalid_json
    assert error["code"] in ("invalid_json", "number_out_of_range")
    assert error["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- deep nesting and sizes

DEEP = "@@deep@@"


def _nest(depth: int, leaf: bytes, kind: str) -> bytes:
    if kind == "object":
        return b'{"a":' * depth + leaf + b"}" * depth
    return b"[" * depth + leaf + b"]" * depth


CHAT_BASE = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
EMBEDDING_BASE = {"model": EMBEDDING_MODEL, "input": "hi"}

# Where a deeply nested value goes: legal per the spec (free-form objects, vendor fields) or not.
DEEP_PLACES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "function parameters": (
        CHAT,
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": DEEP}}}]},
        True,
    ),
    "json schema": (
        CHAT,
        {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"x": DEEP}}}},
        True,
    ),
    "unknown chat field": (CHAT, {"x_vendor": DEEP}, True),
    "unknown embeddings field": (EMBEDDINGS, {"x_vendor": DEEP}, True),
    "message content": (CHAT, {"messages": [{"role": "user", "content": DEEP}]}, False),
    "temperature": (CHAT, {"temperature": DEEP}, False),
    "metadata": (CHAT, {"metadata": {"k": DEEP}}, False),
    "embeddings dimensions": (EMBEDDINGS, {"dimensions": DEEP}, False),
}


@HYPOTHESIS
@given(
    depth=st.integers(1, 1500) | st.sampled_from([254, 255, 256, 1023, 1024, 1025]),
    place=st.sampled_from(sorted(DEEP_PLACES)),
    kind=st.sampled_from(["object", "array"]),
)
def test_deep_nesting_never_breaks_the_gateway(line: Line, depth: int, place: str, kind: str) -> None:
    path, fields, legal = DEEP_PLACES[place]
    body = {**(CHAT_BASE if path == CHAT else EMBEDDING_BASE), **fields}
    raw = orjson.dumps(body).replace(f'"{DEEP}"'.encode(), _nest(depth, b"1", kind))
    response, reached = line.post(path, raw)
    _check_never_broken(response, reached)
    if not legal:  # the spec rejects these at any depth
        _check_refused(response, reached)
    elif depth <= 100:  # no reasonable limit refuses a value this deep
        _check_forwarded(response, reached)


LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    """A gateway that takes request bodies of up to 64 KiB."""
    with _serving(tmp_path_factory.mktemp("small"), max_request_bytes="64KiB") as (gateway, upstream):
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as http:
            yield Line(http, upstream)


@settings(HYPOTHESIS, max_examples=60)
@given(size=st.integers(0, 2 * LIMIT) | st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1]))
def test_bodies_over_the_size_limit_get_413_before_the_upstream(small_line: Line, size: int) -> None:
    skeleton = orjson.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": ""}]})
    raw = skeleton.replace(b'""', b'"' + b"x" * max(0, size - len(skeleton)) + b'"')
    response, reached = small_line.post(CHAT, raw)
    if len(raw) <= LIMIT:
        _check_forwarded(response, reached)
    else:
        error = _check_refused(response, reached)
        assert response.status_code == 413
        assert error["code"] == "request_too_large"


@settings(HYPOTHESIS, max_examples=20)
@given(size=st.integers(100_000, 3_000_000))
def test_huge_strings_within_the_limit_are_forwarded_intact(line: Line, size: int) -> None:
    text = ("\u00e9t\u00e9 \U0001f680 " * (size // 8 + 1))[:size]
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": text}], "x_blob": text}
    response, reached = line.post(CHAT, orjson.dumps(body))
    _check_forwarded(response, reached)
    sent = line.sent()
    assert sent["messages"][0]["content"] == text
    assert sent["x_blob"] == text


# --------------------------------------------------------------------------- known gaps, one by one

M = [{"role": "user", "content": "hi"}]


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "messages": M, **fields}


SPEC_INVALID = {
    "functions-empty": _chat(functions=[]),
    "safety_identifier-too-long": _chat(safety_identifier="x" * 65),
    "allowed_tools-without-mode-and-tools": _chat(tool_choice={"type": "allowed_tools", "allowed_tools": {}}),
    "custom-tool-format-without-grammar": _chat(
        tools=[{"type": "custom", "custom": {"name": "sql", "format": {"type": "grammar"}}}]
    ),
    "web_search-location-incomplete": _chat(web_search_options={"user_location": {"type": "approximate"}}),
    "prediction-empty-parts": _chat(prediction={"type": "content", "content": []}),
    "prediction-image-part": _chat(
        prediction={"type": "content", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}
    ),
    "audio-voice-object-without-id": _chat(audio={"voice": {"name": "mine"}, "format": "mp3"}),
}


@pytest.mark.parametrize("body", list(SPEC_INVALID.values()), ids=list(SPEC_INVALID))
def test_spec_invalid_bodies_are_refused_before_the_upstream(line: Line, body: dict[str, Any]) -> None:
    assert not is_valid_openai("CreateChatCompletionRequest", body)
    response, reached = line.post(CHAT, orjson.dumps(body))
    error = _check_refused(response, reached)
    assert response.status_code == 400
    assert error["param"]


# Documented exceptions: these pass through although the spec rejects them.
PASSED_THROUGH = {
    "vendor-field": _chat(top_k=20, repetition_penalty=1.1),
    "vendor-content-part": _chat(
        messages=[
            {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}]}
        ]
    ),
    "service_tier": _chat(service_tier="turbo"),
    "reasoning_effort": _chat(reasoning_effort="extreme"),
    "verbosity": _chat(verbosity="chatty"),
    "modalities": _chat(modalities=["text", "video"]),
    "prompt_cache_retention": _chat(prompt_cache_retention="7d"),
}


@pytest.mark.parametrize("body", list(PASSED_THROUGH.values()), ids=list(PASSED_THROUGH))
def test_documented_extensions_reach_the_upstream_unchanged(line: Line, body: dict[str, Any]) -> None:
    response, reached = line.post(CHAT, orjson.dumps(body))
    _check_forwarded(response, reached)
    sent = line.sent()
    assert {k: v for k, v in sent.items() if k != "model"} == {k: v for k, v in body.items() if k != "model"}


def test_extended_enums_are_still_type_checked(line: Line) -> None:
    for name in [*EXTENDED_ENUMS, "modalities"]:
        response, reached = line.post(CHAT, orjson.dumps(_chat(**{name: 42})))
        assert _check_refused(response, reached)["param"] == name


def test_integers_beyond_64_bits_are_refused(line: Line) -> None:
    skeleton = orjson.dumps(_chat(seed="@"))
    for number in [b"123456789012345678901234567890", b"-9223372036854775809", b"18446744073709551616"]:
        response, reached = line.post(CHAT, skeleton.replace(b'"@"', number))
        assert _check_refused(response, reached)["param"] == "seed"


# --------------------------------------------------------------------------- messages naming the param


@pytest.fixture(scope="module")
def client(served: tuple[Gateway, Upstream]) -> Iterator[openai.OpenAI]:
    gateway, _ = served
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


@pytest.fixture
def upstream(served: tuple[Gateway, Upstream]) -> Upstream:
    """The module's upstream, emptied of what earlier tests sent it."""
    upstream = served[1]
    upstream.clear()
    return upstream


def _bad_request(call: Callable[[], Any]) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    return caught.value


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content", "invalid_type"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        ({"messages": []}, "messages", "empty_array"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content", "empty_array"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (
            {"messages": [*M, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}]},
            "messages[1].tool_calls[0].function",
            "missing_required_parameter",
        ),
        ({"temperature": 2.5}, "temperature", "invalid_value"),
        ({"temperature": "hot"}, "temperature", "invalid_type"),
        ({"top_p": -0.1}, "top_p", "invalid_value"),
        ({"n": 0}, "n", "invalid_value"),
        ({"presence_penalty": 2.01}, "presence_penalty", "invalid_value"),
        ({"top_logprobs": 3}, "top_logprobs", "invalid_value"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
        ({"logit_bias": {"50256": -101}}, "logit_bias.50256", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter"),
        ({"tools": [WEATHER_TOOL, {"type": "retrieval"}]}, "tools[1].type", "invalid_value"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.function", "missing_required_parameter"),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "missing_required_parameter",
        ),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage", "invalid_type"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_validation_errors_name_the_parameter(
    client: openai.OpenAI, upstream: Upstream, kwargs: dict[str, Any], param: str, code: str
) -> None:
    arguments: dict[str, Any] = {"model": CHAT_MODEL, "messages": M, **kwargs}
    error = _bad_request(lambda: client.chat.completions.create(**arguments))
    assert isinstance(error.body, dict)
    assert error.body["param"] == param
    assert error.body["code"] == code
    assert error.body["type"] == "invalid_request_error"
    assert f"'{param}'" in error.body["message"]
    assert error.status_code == 400
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [[]]}, "input[0]"),
        ({"input": ["a", 1]}, "input"),
        ({"input": "hi", "dimensions": 0}, "dimensions"),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ],
    ids=["empty", "empty-token-list", "mixed", "dimensions", "encoding_format"],
)
def test_embedding_validation_errors_name_the_parameter(
    client: openai.OpenAI, upstream: Upstream, kwargs: dict[str, Any], param: str
) -> None:
    arguments: dict[str, Any] = {"model": EMBEDDING_MODEL, **kwargs}
    error = _bad_request(lambda: client.embeddings.create(**arguments))
    assert isinstance(error.body, dict)
    assert str(error.body["param"]).startswith(param.split("[")[0])
    assert upstream.requests == []


def test_a_valid_embeddings_request_is_answered(client: openai.OpenAI, upstream: Upstream) -> None:
    result = client.embeddings.create(
        model=EMBEDDING_MODEL, input=["hello", "world"], encoding_format="float"
    )
    assert result.data
    assert upstream.requests[-1].json["input"] == ["hello", "world"]


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"metadata": {"ticket": 7}}, "ticket"), ({"logit_bias": {"50256": "ban"}}, "50256")]
)
def test_a_bad_value_in_a_map_names_its_key(
    client: openai.OpenAI, upstream: Upstream, kwargs: dict[str, Any], key: str
) -> None:
    arguments: dict[str, Any] = {"model": CHAT_MODEL, "messages": M, **kwargs}
    error = _bad_request(lambda: client.chat.completions.create(**arguments))
    assert isinstance(error.body, dict)
    assert error.body["param"].startswith(next(iter(kwargs)))
    assert key in error.body["param"]
    assert upstream.requests == []
