"""`POST /v1/completions`, OpenAI's legacy API, through the official SDK: passed whole to a provider
that serves it (its answer and events as they came), translated to chat for one that does not
(the answer as a `text_completion`), what only the legacy API can do refused with a 400 naming it
where no deployment serves it, and every request recorded in the ledger like a chat request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.upstream import Upstream

LEGACY = {
    "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
    "object": "text_completion",
    "created": 1589478378,
    "model": "gpt-3.5-turbo-instruct",
    "system_fingerprint": "fp_44709d6fcb",
    "choices": [
        {"text": "\n\nThis is indeed a test", "index": 0, "logprobs": None, "finish_reason": "length"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}
CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "llama-3.1-8b-instant",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "This is a test."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
}
PRICE = {"input": "1.50", "output": "2.00"}


def _doc(upstream: Upstream, kind: str) -> dict[str, Any]:
    provider = {"type": kind, "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"}
    return {
        "providers": {"up": provider},
        "models": {"instruct": {"provider": "up", "model": "gpt-3.5-turbo-instruct", "price": PRICE}},
    }


@pytest.fixture
def start(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Callable[[str], Gateway]:
    return lambda kind: start_gateway(_doc(upstream, kind), {"UPSTREAM_KEY": UPSTREAM_KEY})


def _client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def _flush(gateway: Gateway) -> None:
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)


def test_a_provider_that_serves_the_legacy_api_gets_the_request_whole(
    start: Callable[[str], Gateway], upstream: Upstream, tmp_path: Path
) -> None:
    gateway = start("vllm")
    upstream.reply_json(LEGACY)
    answer = _client(gateway).completions.create(
        model="instruct", prompt="Say this is a test", max_tokens=7, temperature=0, echo=False, suffix=None
    )
    assert answer.choices[0].text == "\n\nThis is indeed a test"
    assert answer.id == LEGACY["id"] and answer.usage is not None and answer.usage.total_tokens == 12
    (sent,) = upstream.requests
    assert sent.path == "/v1/completions"
    assert sent.json["prompt"] == "Say this is a test" and sent.json["model"] == "gpt-3.5-turbo-instruct"
    assert sent.json["max_tokens"] == 7 and "messages" not in sent.json
    _flush(gateway)
    (row,) = ledger_rows(tmp_path / "data0")
    assert (row["api"], row["alias"], row["input_tokens"], row["output_tokens"]) == (
        "completions",
        "instruct",
        5,
        7,
    )
    assert (
        row["cost_micros"] == 22
    )  # 5 x $1.50 + 7 x $2.00 per 1M tokens: 21.5 micro-dollars, rounded half up


def test_a_streamed_legacy_request_is_passed_through_and_its_usage_recorded(
    start: Callable[[str], Gateway], upstream: Upstream, tmp_path: Path
) -> None:
    gateway = start("vllm")
    pieces = ["This", " is", " a", " test"]
    events = [
        {
            "id": "cmpl-s",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [
                {"text": piece, "index": 0, "logprobs": None, "finish_reason": "length" if i == 3 else None}
            ],
        }
        for i, piece in enumerate(pieces)
    ]
    usage = {
        "id": "cmpl-s",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8},
    }
    upstream.reply_sse(
        [b"data: %s\n\n" % json.dumps(e).encode() for e in [*events, usage]] + [b"data: [DONE]\n\n"]
    )
    stream = _client(gateway).completions.create(model="instruct", prompt="Say this is a test", stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "This is a test"
    assert all(c.usage is None for c in chunks)  # the usage the client did not ask for: read, not sent
    (sent,) = upstream.requests
    assert sent.path == "/v1/completions" and sent.json["stream_options"] == {"include_usage": True}
    _flush(gateway)
    (row,) = ledger_rows(tmp_path / "data0")
    assert (row["api"], row["stream"], row["input_tokens"], row["output_tokens"]) == (
        "completions",
        True,
        4,
        4,
    )


def test_a_provider_without_the_legacy_api_gets_the_prompt_as_chat(
    start: Callable[[str], Gateway], upstream: Upstream, tmp_path: Path
) -> None:
    gateway = start("groq")
    upstream.reply_json(CHAT)
    answer = _client(gateway).completions.create(model="instruct", prompt="Say this is a test", stop=["\n"])
    assert answer.object == "text_completion"
    assert answer.choices[0].text == "This is a test." and answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        12,
        5,
    )
    (sent,) = upstream.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"] == [{"role": "user", "content": "Say this is a test"}]
    assert sent.json["max_tokens"] == 16  # the legacy API's default, not chat's none
    assert sent.json["stop"] == ["\n"] and "prompt" not in sent.json
    _flush(gateway)
    (row,) = ledger_rows(tmp_path / "data0")
    assert (row["api"], row["input_tokens"], row["output_tokens"]) == ("completions", 12, 5)


def test_a_translated_stream_comes_back_as_legacy_chunks(
    start: Callable[[str], Gateway], upstream: Upstream
) -> None:
    gateway = start("groq")
    stream = _client(gateway).completions.create(
        model="instruct", prompt="Say this is a test", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text  # the fixture's answer, as legacy text chunks
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert upstream.requests[0].path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"echo": True}, "echo"),
        ({"suffix": "\n}"}, "suffix"),
        ({"logprobs": 2}, "logprobs"),
        ({"best_of": 3}, "best_of"),
        ({"prompt": ["one", "two"]}, "prompt"),
        ({"prompt": [1212, 318, 257]}, "prompt"),
    ],
)
def test_what_only_the_legacy_api_can_do_is_refused_where_no_deployment_serves_it(
    start: Callable[[str], Gateway], upstream: Upstream, fields: dict[str, Any], named: str
) -> None:
    gateway = start("groq")
    request: dict[str, Any] = {"model": "instruct", "prompt": "Say this is a test", **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway).completions.create(**request)
    body: Any = caught.value.body
    assert body["param"] == named and "Completions-format deployment" in body["message"]
    assert upstream.requests == []


def test_several_prompts_go_whole_to_a_provider_that_serves_them(
    start: Callable[[str], Gateway], upstream: Upstream
) -> None:
    gateway = start("openai_compatible")
    two = {**LEGACY, "choices": [{**LEGACY["choices"][0], "index": i} for i in range(2)]}  # type: ignore[dict-item]
    upstream.reply_json(two)
    answer = _client(gateway).completions.create(
        model="instruct", prompt=["one", "two"], echo=True, logprobs=1
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert upstream.requests[0].json["prompt"] == ["one", "two"] and upstream.requests[0].json["echo"] is True


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "instruct"}, "prompt"),
        ({"model": "instruct", "prompt": 42}, "prompt"),
        ({"model": "instruct", "prompt": [["a"]]}, "prompt"),
        ({"model": "instruct", "prompt": []}, "prompt"),
    ],
)
def test_a_malformed_prompt_is_a_400_naming_it(
    start: Callable[[str], Gateway], upstream: Upstream, body: dict[str, Any], param: str
) -> None:
    gateway = start("vllm")
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway).post("/completions", cast_to=object, body=body)
    error: Any = caught.value.body
    assert error["param"] == param
    assert upstream.requests == []
