"""The `type: fake` provider through the gateway and the official OpenAI SDK: a real upstream on
loopback that answers in OpenAI's wire format (echo, usage, streams, tools, structured outputs, n,
logprobs, embeddings) and fails on demand, scripted by directives in the model name."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.spec import validate_openai

CHUNKS = 4
QUESTION = "What does a railway turnout do for the trains?"
ANSWER = f"You said: {QUESTION}"
USER = [{"role": "user", "content": QUESTION}]

FAKE_DOC = {
    # one attempt, and breakers that never open: each test sees the fake's own behaviour, however
    # many failures the tests before it provoked (failover has its own tests)
    "routing": {
        "retries": {"attempts": 1},
        "breaker": {"consecutive_failures": 10000, "min_requests": 10000},
    },
    "providers": {
        "fake": {"type": "fake", "fake": {"chunks": CHUNKS, "models": ["fake-small", "fake-large"]}},
        # a short wait for the first byte, so that a hanging upstream fails the request soon
        "fake-slow": {"type": "fake", "timeouts": {"first_byte": "300ms"}},
    },
    "models": {
        "echo": {"provider": "fake", "model": "fake-small"},
        "fake/*": {"provider": "fake", "model": "*"},
        "slow/*": {"provider": "fake-slow", "model": "*"},
    },
}

BOOKING_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "nights": {"type": "integer", "minimum": 1},
        "price": {"type": "number"},
        "breakfast": {"type": "boolean"},
        "room": {"type": "string", "enum": ["single", "double", "suite"]},
        "guests": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
                "required": ["name", "age"],
                "additionalProperties": False,
            },
        },
        "note": {"type": "string"},
    },
    "required": ["city", "nights", "price", "breakfast", "room", "guests"],
    "additionalProperties": False,
}

BOOK_TOOL = {
    "type": "function",
    "function": {"name": "book_hotel", "description": "Book a hotel room", "parameters": BOOKING_SCHEMA},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["location", "unit"],
        },
    },
}


@pytest.fixture(scope="module")
def fake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the module: the fake keeps no state a test could leave behind."""
    gateway = Gateway(settings_for(FAKE_DOC, tmp_path_factory.mktemp("fake"))).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def fake(fake_gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def _sse_payloads(gateway: Gateway, body: dict[str, Any]) -> list[Any]:
    """The stream's events as the client receives them, checked to be well-formed SSE."""
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert text.count("[DONE]") == 1
    return [json.loads(e.removeprefix("data: ")) for e in events[:-1]]


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize("model", ["echo", "fake/fake-small"])
def test_plain_answer_echoes_the_user_with_usage(fake: openai.OpenAI, model: str) -> None:
    raw = fake.chat.completions.with_raw_response.create(model=model, messages=USER)
    body = json.loads(raw.content)
    validate_openai("CreateChatCompletionResponse", body)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "fake-small"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw.headers["x-turnout-deployment"] == "fake/fake-small"


def test_answers_the_last_user_message_and_fixed_replies(fake: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
    ]
    completion = fake.chat.completions.create(model="fake/fake-small", messages=messages)
    assert completion.choices[0].message.content == "You said: second question"

    fixed = fake.chat.completions.create(model="fake/fake-small?reply=All+aboard%21", messages=USER)
    assert fixed.choices[0].message.content == "All aboard!"
    assert fixed.model == "fake-small"  # the directives are not part of the model's name


def test_usage_can_be_left_out(fake: openai.OpenAI) -> None:
    raw = fake.chat.completions.with_raw_response.create(model="fake/fake-small?usage=false", messages=USER)
    body = json.loads(raw.content)
    validate_openai("CreateChatCompletionResponse", body)
    assert "usage" not in body
    assert raw.parse().choices[0].message.content == ANSWER


@pytest.mark.parametrize(
    ("model", "pieces"),
    [
        ("fake/fake-small", CHUNKS),
        ("fake/fake-small?chunks=6", 6),
        ("fake/fake-small?chunks=1", 1),
        ("fake/fake-small?chunks=3&latency=5ms&gap=1ms", 3),
    ],
)
def test_stream_has_the_configured_chunks_and_a_usage_chunk(
    fake: openai.OpenAI, model: str, pieces: int
) -> None:
    chunks = list(
        fake.chat.completions.create(
            model=model, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == pieces
    assert "".join(content) == ANSWER
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len({c.id for c in chunks}) == 1
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_has_no_usage_chunk(fake: openai.OpenAI) -> None:
    chunks = list(fake.chat.completions.create(model="fake/fake-small", messages=USER, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER


@pytest.mark.parametrize("include_usage", [True, False])
def test_every_streamed_chunk_is_valid(fake_gateway: Gateway, include_usage: bool) -> None:
    body: dict[str, Any] = {"model": "fake/fake-small", "messages": USER}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    payloads = _sse_payloads(fake_gateway, body)
    for payload in payloads:
        validate_openai("CreateChatCompletionStreamResponse", payload)
    assert bool(payloads[-1].get("usage")) is include_usage
    # role chunk, the content pieces, the finish chunk (and the usage chunk)
    assert len(payloads) == 1 + CHUNKS + 1 + (1 if include_usage else 0)


def test_a_tool_call_satisfies_the_tool_schema(fake: openai.OpenAI) -> None:
    raw = fake.chat.completions.with_raw_response.create(
        model="fake/fake-small", messages=USER, tools=[BOOK_TOOL, WEATHER_TOOL]
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "book_hotel"
    jsonschema.validate(json.loads(call.function.arguments), BOOKING_SCHEMA)


def test_tool_choice_names_the_tool(fake: openai.OpenAI) -> None:
    completion = fake.chat.completions.create(
        model="fake/fake-small",
        messages=USER,
        tools=[BOOK_TOOL, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER_TOOL["function"]["parameters"])

    answered = fake.chat.completions.create(
        model="fake/fake-small", messages=USER, tools=[BOOK_TOOL], tool_choice="none"
    )
    assert answered.choices[0].message.tool_calls is None
    assert answered.choices[0].message.content == ANSWER


def test_a_streamed_tool_call_satisfies_the_tool_schema(fake: openai.OpenAI, fake_gateway: Gateway) -> None:
    chunks = list(
        fake.chat.completions.create(model="fake/fake-small", messages=USER, tools=[BOOK_TOOL], stream=True)
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function is not None
    assert deltas[0].function.name == "book_hotel"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    jsonschema.validate(json.loads(arguments), BOOKING_SCHEMA)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

    for payload in _sse_payloads(
        fake_gateway, {"model": "fake/fake-small", "messages": USER, "tools": [BOOK_TOOL]}
    ):
        validate_openai("CreateChatCompletionStreamResponse", payload)


def test_json_schema_response_format_yields_matching_json(fake: openai.OpenAI) -> None:
    raw = fake.chat.completions.with_raw_response.create(
        model="fake/fake-small",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "booking", "schema": BOOKING_SCHEMA, "strict": True},
        },
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    content = raw.parse().choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), BOOKING_SCHEMA)


def test_json_object_response_format_yields_a_json_object(fake: openai.OpenAI) -> None:
    completion = fake.chat.completions.create(
        model="fake/fake-small", messages=USER, response_format={"type": "json_object"}
    )
    content = completion.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict)


def test_n_and_logprobs_are_honoured(fake: openai.OpenAI) -> None:
    raw = fake.chat.completions.with_raw_response.create(
        model="fake/fake-small", messages=USER, n=3, logprobs=True, top_logprobs=0
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    completion = raw.parse()
    assert [c.index for c in completion.choices] == [0, 1, 2]
    for choice in completion.choices:
        assert choice.message.content == ANSWER
        assert choice.logprobs is not None and choice.logprobs.content
        assert " ".join(t.token for t in choice.logprobs.content) == ANSWER
        assert all(t.logprob <= 0 for t in choice.logprobs.content)

    plain = fake.chat.completions.create(model="fake/fake-small", messages=USER)
    assert plain.choices[0].logprobs is None


def test_n_in_a_stream(fake: openai.OpenAI) -> None:
    chunks = list(fake.chat.completions.create(model="fake/fake-small", messages=USER, n=2, stream=True))
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: ANSWER, 1: ANSWER}


# --------------------------------------------------------------------------- failures on demand


@pytest.mark.parametrize(
    ("directives", "error", "status"),
    [
        ("fail=500", openai.InternalServerError, 502),
        ("fail=502", openai.InternalServerError, 502),
        ("fail=503", openai.InternalServerError, 503),
        ("fail=529", openai.InternalServerError, 503),
        ("fail=400", openai.BadRequestError, 400),
        ("fail=404", openai.NotFoundError, 404),
        # the provider refusing turnout's own key is an operator problem, never the client's 401
        ("fail=401", openai.InternalServerError, 502),
        ("fail=403", openai.InternalServerError, 502),
        ("fail=reset", openai.InternalServerError, 502),
        ("fail=truncate", openai.InternalServerError, 502),
    ],
)
def test_failures_come_back_with_the_right_status(
    fake: openai.OpenAI, directives: str, error: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as caught:
        fake.chat.completions.create(model=f"fake/fake-small?{directives}", messages=USER)
    assert caught.value.status_code == status
    validate_openai("ErrorResponse", caught.value.response.json())


def test_a_malformed_answer_is_a_502(fake: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        fake.chat.completions.create(model="fake/fake-small?fail=malformed", messages=USER)
    assert caught.value.status_code == 502
    validate_openai("ErrorResponse", caught.value.response.json())


def test_rate_limit_carries_retry_after(fake: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        fake.chat.completions.create(model="fake/fake-small?fail=429&retry_after=2", messages=USER)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.type == "rate_limit_error"
    validate_openai("ErrorResponse", caught.value.response.json())

    with pytest.raises(openai.RateLimitError) as caught:
        fake.chat.completions.create(model="fake/fake-small?fail=429", messages=USER)
    assert "retry-after" not in caught.value.response.headers


def test_unavailable_carries_retry_after(fake: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        fake.chat.completions.create(model="fake/fake-small?fail=503&retry_after=5", messages=USER)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "5"


def test_a_hanging_upstream_times_out_with_504(fake: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        fake.chat.completions.create(model="slow/fake-model?fail=hang", messages=USER)
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    validate_openai("ErrorResponse", caught.value.response.json())


def test_a_stream_that_fails_before_its_first_chunk_gets_a_status(fake: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        fake.chat.completions.create(model="fake/fake-small?fail=500", messages=USER, stream=True)
    assert caught.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as caught:
        fake.chat.completions.create(
            model="fake/fake-small?fail=malformed&after=0", messages=USER, stream=True
        )
    assert caught.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as caught:
        fake.chat.completions.create(model="slow/fake-model?fail=hang", messages=USER, stream=True)
    assert caught.value.status_code == 504


def _cut_short(fake: openai.OpenAI, directives: str) -> tuple[list[Any], openai.APIError]:
    """Read a stream that fails midway: the chunks received before the error, and the error."""
    stream = fake.chat.completions.create(model=f"fake/fake-small?{directives}", messages=USER, stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    error = caught.value
    assert not isinstance(error, openai.APIStatusError)  # the 200 had been sent already
    assert not isinstance(error, openai.APIConnectionError)  # an error event, not a dropped connection
    assert isinstance(error.body, dict) and error.body.get("message")
    text = "".join(c.choices[0].delta.content or "" for c in received)
    assert ANSWER.startswith(text) and text != ANSWER
    return received, error


@pytest.mark.parametrize("failure", ["truncate", "malformed", "reset"])
def test_a_stream_cut_short_raises_after_the_chunks_it_had(fake: openai.OpenAI, failure: str) -> None:
    received, _ = _cut_short(fake, f"fail={failure}&after=2")
    assert len(received) == 2
    received, _ = _cut_short(fake, f"fail={failure}&after=3")
    assert len(received) == 3


def test_an_error_event_mid_stream_passes_on_the_upstreams_message(fake: openai.OpenAI) -> None:
    received, error = _cut_short(fake, "fail=error_event&after=2")
    assert len(received) == 2
    assert "the fake model failed mid-answer" in error.message


def test_fail_rate_zero_never_fails(fake: openai.OpenAI) -> None:
    completion = fake.chat.completions.create(model="fake/fake-small?fail=500&fail_rate=0", messages=USER)
    assert completion.choices[0].message.content == ANSWER


@pytest.mark.parametrize(
    ("directives", "words"),
    [("colour=red", "unknown directive"), ("fail=teapot", "fail"), ("chunks=0", "chunks")],
)
def test_a_bad_directive_is_a_400_from_the_fake(fake: openai.OpenAI, directives: str, words: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        fake.chat.completions.create(model=f"fake/fake-small?{directives}", messages=USER)
    assert caught.value.status_code == 400
    assert words in caught.value.message
    validate_openai("ErrorResponse", caught.value.response.json())


# --------------------------------------------------------------------------- embeddings and models


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_embeddings_are_deterministic_unit_vectors(fake: openai.OpenAI) -> None:
    raw = fake.embeddings.with_raw_response.create(
        model="fake/fake-embed", input=["alpha", "beta", "alpha"], encoding_format="float"
    )
    body = json.loads(raw.content)
    validate_openai("CreateEmbeddingResponse", body)
    vectors = [item.embedding for item in raw.parse().data]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert all(len(v) == 8 for v in vectors)
    assert all(math.isclose(_norm(v), 1.0, rel_tol=1e-6) for v in vectors)
    assert body["usage"]["prompt_tokens"] > 0

    again = fake.embeddings.create(model="fake/fake-embed", input="alpha", encoding_format="float")
    assert again.data[0].embedding == vectors[0]
    # base64, as the SDK asks by default, carries the same vector in float32
    decoded = fake.embeddings.create(model="fake/fake-embed", input="alpha")
    assert all(
        math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded.data[0].embedding, vectors[0], strict=True)
    )


def test_embedding_dimensions_are_honoured(fake: openai.OpenAI) -> None:
    result = fake.embeddings.create(
        model="fake/fake-embed", input=["alpha", "beta"], dimensions=32, encoding_format="float"
    )
    assert [len(item.embedding) for item in result.data] == [32, 32]
    assert all(math.isclose(_norm(item.embedding), 1.0, rel_tol=1e-6) for item in result.data)
    base64_result = fake.embeddings.create(model="fake/fake-embed", input="alpha", dimensions=16)
    assert len(base64_result.data[0].embedding) == 16


def test_token_inputs_are_embedded(fake: openai.OpenAI) -> None:
    result = fake.embeddings.create(
        model="fake/fake-embed", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert len(result.data) == 2
    assert result.data[0].embedding != result.data[1].embedding


def test_models_lists_the_fakes_models_through_the_wildcard(fake: openai.OpenAI) -> None:
    raw = fake.models.with_raw_response.list()
    body = json.loads(raw.content)
    validate_openai("ListModelsResponse", body)
    ids = {m.id for m in raw.parse()}
    assert ids == {"echo", "fake/fake-small", "fake/fake-large", "slow/fake-model"}
    assert fake.models.retrieve("fake/fake-large").id == "fake/fake-large"
