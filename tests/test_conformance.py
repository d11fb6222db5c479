"""One conformance suite every upstream adapter passes: the official `openai` SDK against turnout
against a model that speaks each provider's own wire format (support/wire_models.py) — plain,
system, multi-turn, tools round trip, parallel tool calls, streaming with usage, streamed tool
calls, images, structured output, and each error status — parametrised by what each adapter
declares it can carry (checked against the adapter itself, so the table cannot drift)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_openai
from support.wire_models import WireModels

PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


@dataclass(frozen=True)
class Adapter:
    name: str
    provider: Callable[[str], dict[str, Any]]  # the provider's config, given the wire models' root URL
    error_body: dict[str, Any]  # an error answer in the provider's own format
    model: str = "m-1"
    images: bool = True
    json_schema: bool = True
    extra_statuses: tuple[tuple[int, int], ...] = ()  # (upstream status, status the client gets)


ADAPTERS = [
    Adapter(
        "openai",
        lambda root: {"type": "openai", "base_url": f"{root}/v1", "api_key": "env:UPSTREAM_KEY"},
        {"error": {"message": "Nope.", "type": "invalid_request_error", "param": None, "code": None}},
    ),
    Adapter(
        "anthropic",
        lambda root: {"type": "anthropic", "base_url": f"{root}/v1", "api_key": "env:UPSTREAM_KEY"},
        {"type": "error", "error": {"type": "invalid_request_error", "message": "Nope."}},
        extra_statuses=((529, 503),),  # overloaded
    ),
    Adapter(
        "gemini",
        lambda root: {"type": "gemini", "base_url": f"{root}/v1beta", "api_key": "env:UPSTREAM_KEY"},
        {"error": {"code": 400, "message": "Nope.", "status": "INVALID_ARGUMENT"}},
    ),
    Adapter(
        "vertex",
        lambda root: {"type": "vertex", "base_url": f"{root}/v1", "api_key": "env:UPSTREAM_KEY"},
        {"error": {"code": 400, "message": "Nope.", "status": "INVALID_ARGUMENT"}},
    ),
    Adapter(
        "cohere",
        lambda root: {"type": "cohere", "base_url": f"{root}/v2", "api_key": "env:UPSTREAM_KEY"},
        {"id": "e1", "message": "Nope."},
    ),
    Adapter(
        "bedrock",
        lambda root: {
            "type": "bedrock",
            "base_url": root,
            "aws": {
                "region": "us-east-1",
                "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                "secret_access_key": "env:AWS_SECRET",
            },
        },
        {"message": "Nope."},
        model="anthropic.claude-3-5-sonnet-20240620-v1:0",
    ),
]
STATUSES = ((400, 400), (429, 429), (401, 502), (403, 502), (500, 502), (503, 503))


@pytest.fixture(scope="module")
def models() -> Iterator[WireModels]:
    server = WireModels().start()
    yield server
    server.stop()


@pytest.fixture(params=ADAPTERS, ids=lambda a: a.name)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def gateway(adapter: Adapter, models: WireModels, start_gateway: Callable[..., Gateway]) -> Gateway:
    doc = {
        "routing": {
            "retries": {"attempts": 1},
            "breaker": {"consecutive_failures": 10000, "min_requests": 10000},
        },
        "providers": {adapter.name: adapter.provider(models.root_url)},
        "models": {"m": {"provider": adapter.name, "model": adapter.model}},
    }
    models.clear()
    return start_gateway(doc, ENV)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def chat(client: openai.OpenAI, messages: list[Any], **options: Any) -> Any:
    raw = client.chat.completions.with_raw_response.create(model="m", messages=messages, **options)
    validate_openai("CreateChatCompletionResponse", json.loads(raw.http_response.content))
    return raw.parse()


def streamed(client: openai.OpenAI, messages: list[Any], **options: Any) -> tuple[str, list[Any], Any, Any]:
    """(text, tool calls assembled, finish reason, usage) of a streamed answer."""
    text, calls, finish, usage = "", {}, None, None
    with client.chat.completions.create(
        model="m", messages=messages, stream=True, stream_options={"include_usage": True}, **options
    ) as stream:
        for chunk in stream:
            validate_openai("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or ():
                    entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                    entry["id"] = call.id or entry["id"]
                    if call.function is not None:
                        entry["name"] += call.function.name or ""
                        entry["arguments"] += call.function.arguments or ""
                finish = choice.finish_reason or finish
    return text, [calls[i] for i in sorted(calls)], finish, usage


def test_the_declared_capabilities_are_the_adapters_own(adapter: Adapter, gateway: Gateway) -> None:
    caps = gateway.services.registry[adapter.name].capabilities
    assert (caps.images, caps.json_schema, caps.tools, caps.streaming) == (
        adapter.images,
        adapter.json_schema,
        True,
        True,
    )


def test_plain(adapter: Adapter, client: openai.OpenAI) -> None:
    answer = chat(client, [{"role": "user", "content": "Hello there"}])
    assert answer.choices[0].message.content == "no system | turn 1 | you said: Hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == adapter.model  # the deployment's model, as the provider names it
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 10)
    assert answer.usage.total_tokens == 12


def test_system_and_developer_messages(client: openai.OpenAI) -> None:
    answer = chat(
        client,
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use French."},
            {"role": "user", "content": "Hi"},
        ],
    )
    text = answer.choices[0].message.content
    assert text.startswith("Be brief.") and "Use French." in text and text.endswith("you said: Hi")


def test_multi_turn(client: openai.OpenAI) -> None:
    answer = chat(
        client,
        [
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": "Second question"},
        ],
    )
    assert answer.choices[0].message.content == "no system | turn 3 | you said: Second question"


def test_tools_round_trip(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = chat(client, ask, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    second = chat(
        client,
        [
            *ask,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
        ],
        tools=[WEATHER],
    )
    assert second.choices[0].message.content == "The weather: 18 C and sunny"
    assert second.choices[0].finish_reason == "stop"


def test_parallel_tool_calls_and_their_results(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    first = chat(client, ask, tools=[WEATHER])
    calls = first.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Oslo"]
    assert len({c.id for c in calls}) == 2
    results = [
        {"role": "tool", "tool_call_id": c.id, "content": f"{json.loads(c.function.arguments)['city']}: 18 C"}
        for c in calls
    ]
    second = chat(
        client, [*ask, first.choices[0].message.model_dump(exclude_none=True), *results], tools=[WEATHER]
    )
    assert second.choices[0].message.content == "The weather: Paris: 18 C; Oslo: 18 C"


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    answer = chat(
        client, [{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER], tool_choice="none"
    )
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content == "no system | turn 1 | you said: Weather in Paris?"


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    text, calls, finish, usage = streamed(client, [{"role": "user", "content": "Hello there"}])
    assert text == "no system | turn 1 | you said: Hello there"
    assert calls == [] and finish == "stop"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (2, 10)


def test_a_streamed_tool_call(client: openai.OpenAI) -> None:
    text, calls, finish, _ = streamed(
        client, [{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER]
    )
    assert finish == "tool_calls" and not text
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert calls[0]["id"]


def test_images(adapter: Adapter, client: openai.OpenAI) -> None:
    if not adapter.images:
        with pytest.raises(openai.BadRequestError):
            chat(client, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PIXEL}}]}])
        return
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]
    answer = chat(client, [{"role": "user", "content": content}])
    assert answer.choices[0].message.content == "no system | turn 1 | you said: What is this? | images: 1"


def test_structured_output(adapter: Adapter, client: openai.OpenAI) -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
            },
        },
    }
    if not adapter.json_schema:
        with pytest.raises(openai.BadRequestError):
            chat(client, [{"role": "user", "content": "Say yes"}], response_format=schema)
        return
    answer = chat(client, [{"role": "user", "content": "Say yes"}], response_format=schema)
    assert json.loads(answer.choices[0].message.content) == {"answer": "Say yes"}
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.tool_calls is None
    text, calls, finish, _ = streamed(
        client, [{"role": "user", "content": "Say yes"}], response_format=schema
    )
    assert json.loads(text) == {"answer": "Say yes"} and calls == [] and finish == "stop"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_each_error_status(adapter: Adapter, models: WireModels, client: openai.OpenAI, stream: bool) -> None:
    for upstream_status, client_status in (*STATUSES, *adapter.extra_statuses):
        models.reply_json(adapter.error_body, upstream_status)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hi"}], stream=stream
            )
        error = caught.value
        assert error.status_code == client_status, f"upstream {upstream_status}"
        body = error.body
        assert isinstance(body, dict) and body.get("type") and body.get("message"), body
        assert UPSTREAM_KEY not in json.dumps(body)
        if upstream_status == 400:
            assert isinstance(error, openai.BadRequestError) and "Nope." in error.message


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]"])
def test_tool_arguments_that_are_not_an_object_are_refused_by_formats_that_need_one(
    adapter: Adapter, client: openai.OpenAI, arguments: str
) -> None:
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]
    if adapter.name in ("openai", "cohere"):  # they take the arguments as the string they are
        assert chat(client, history, tools=[WEATHER]).choices[0].message.content == "The weather: 18 C"
        return
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, history, tools=[WEATHER])
    assert caught.value.body["param"] == "messages[1].tool_calls"  # type: ignore[index]
    assert "must be a JSON object" in caught.value.message
