"""Amazon Bedrock as an upstream: the official `openai` SDK against turnout against a real HTTP server
on 127.0.0.1 that answers with Converse / ConverseStream answers built from botocore's
bedrock-runtime service model and AWS's documented examples (streams as real binary
`application/vnd.amazon.eventstream` frames), and records what turnout sent it: the Converse
request, and its SigV4 signature, recomputed here with botocore; and embeddings through
InvokeModel (Titan and Cohere Embed bodies). Every answer turnout gives validates against OpenAI's
spec."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import openai
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from turnout.config.loader import ConfigError
from turnout.providers.config_loader import build_settings, load_settings

from support.gateway import MASTER_KEY, Gateway
from support.spec import validate_openai
from support.upstream import Recorded, Upstream, fixture_bytes, fixture_json

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE//////////wEaDEXAMPLESESSIONTOKEN"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLXNlY3JldA=="
ENV = {"AWS_SECRET": SECRET, "AWS_TOKEN": TOKEN, "BEDROCK_KEY": API_KEY}
REGION = "us-east-1"
MODEL = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"  # an inference profile id: ':' in it
ENCODED_MODEL = "us.anthropic.claude-3-7-sonnet-20250219-v1%3A0"
USER = [{"role": "user", "content": "Hello"}]
EVENT_STREAM = "application/vnd.amazon.eventstream"
REQUEST_ID = "b3d7c2a8-5a5e-4c6e-9d7f-2f0f5d0e8a11"


def bedrock_doc(upstream: Upstream, *, session_token: bool = False, **provider: Any) -> dict[str, Any]:
    aws: dict[str, Any] = {"region": REGION, "access_key_id": KEY_ID, "secret_access_key": "env:AWS_SECRET"}
    if session_token:
        aws["session_token"] = "env:AWS_TOKEN"
    entry: dict[str, Any] = {"type": "bedrock", "base_url": upstream.root_url, "aws": aws, **provider}
    if "api_key" in provider:
        entry["aws"] = {"region": REGION}
    return {
        "routing": {"retries": {"attempts": 1}},
        "providers": {"bedrock": entry},
        "models": {
            "claude": {"provider": "bedrock", "model": MODEL},
            "bedrock/*": {"provider": "bedrock", "model": "*"},
        },
    }


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(bedrock_doc(upstream), ENV)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def reply(upstream: Upstream, name: str, status: int = 200, **changes: Any) -> None:
    body = fixture_json(name, "bedrock")
    body.update(changes)
    upstream.reply_json(body, status, headers={"x-amzn-RequestId": REQUEST_ID})


def sent(upstream: Upstream, action: str = "converse") -> dict[str, Any]:
    request = upstream.requests[-1]
    assert request.raw_path == f"/model/{ENCODED_MODEL}/{action}"
    assert request.path == f"/model/{MODEL}/{action}"
    body: dict[str, Any] = request.json
    return body


# --------------------------------------------------------------------------- event-stream frames


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), string-typed
    headers, payload, CRC32 of everything before it."""
    encoded = b""
    for name, value in headers.items():
        raw = value.encode()
        encoded += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def frames(name: str) -> list[bytes]:
    out = []
    for message in fixture_json(name, "bedrock"):
        kind = message["type"]
        headers = {
            ":message-type": kind,
            ":event-type" if kind == "event" else ":exception-type": message["name"],
            ":content-type": "application/json",
        }
        out.append(frame(headers, json.dumps(message["payload"]).encode()))
    return out


def reply_stream(upstream: Upstream, messages: list[bytes], **options: Any) -> None:
    upstream.reply_sse(
        messages, content_type=EVENT_STREAM, headers={"x-amzn-RequestId": REQUEST_ID}, **options
    )


def stream_chunks(gateway: Gateway, **body: Any) -> list[dict[str, Any]]:
    with httpx.Client(timeout=20) as http:
        response = http.post(
            gateway.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "claude", "messages": USER, "stream": True, **body},
        )
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e.strip()]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
    return chunks


# --------------------------------------------------------------------------- SigV4


AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 "
    r"Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/bedrock/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


def assert_signed(upstream: Upstream, recorded: Recorded, *, token: str | None = None) -> None:
    """The request carries a valid SigV4 signature: recomputed with botocore from what was
    received (method, path as sent, signed headers, body)."""
    match = AUTHORIZATION.fullmatch(recorded.headers["authorization"])
    assert match is not None, recorded.headers["authorization"]
    amz_date = recorded.headers["x-amz-date"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", amz_date)
    assert (match["key"], match["date"], match["region"]) == (KEY_ID, amz_date[:8], REGION)
    signed = match["signed"].split(";")
    expected_signed = ["content-type", "host", "x-amz-date"] + (["x-amz-security-token"] if token else [])
    assert signed == expected_signed
    if token:
        assert recorded.headers["x-amz-security-token"] == token
    else:
        assert "x-amz-security-token" not in recorded.headers
    request = AWSRequest(
        method=recorded.method,
        url=upstream.root_url + recorded.raw_path,
        data=recorded.body,
        headers={name: recorded.headers[name] for name in signed},
    )
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(KEY_ID, SECRET, token), "bedrock", REGION)
    canonical = auth.canonical_request(request)
    assert match["signature"] == auth.signature(auth.string_to_sign(request, canonical), request)


# --------------------------------------------------------------------------- plain answers


def test_a_plain_answer_signed_with_sigv4_and_cache_usage(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "converse.json")
    raw = client.chat.completions.with_raw_response.create(model="claude", messages=USER)
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    completion = raw.parse()
    assert completion.choices[0].message.content == (
        "Hello! I'm Claude, an AI assistant. How can I help you today?"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id == f"chatcmpl-{REQUEST_ID}" and completion.model == MODEL
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (21 + 1000 + 500, 19)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1000
    assert sent(upstream) == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}
    recorded = upstream.requests[-1]
    assert recorded.method == "POST" and recorded.headers["content-type"] == "application/json"
    assert_signed(upstream, recorded)


def test_temporary_credentials_send_and_sign_the_session_token(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(bedrock_doc(upstream, session_token=True), ENV)
    reply(upstream, "converse.json")
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="claude", messages=USER)
    assert_signed(upstream, upstream.requests[-1], token=TOKEN)


def test_an_arn_model_id_is_one_encoded_path_segment_and_signed(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
    reply(upstream, "converse.json")
    client.chat.completions.create(model=f"bedrock/{arn}", messages=USER)
    recorded = upstream.requests[-1]
    assert recorded.raw_path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile"
        "%2Fa1b2c3d4e5f6/converse"
    )
    assert_signed(upstream, recorded)


def test_turnout_addresses_and_signs_a_request_as_botocores_own_client_does(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    import botocore.session

    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
    aws = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=upstream.root_url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    reply(upstream, "converse.json")
    aws.converse(modelId=arn, messages=[{"role": "user", "content": [{"text": "Hello"}]}])
    reply(upstream, "converse.json")
    client.chat.completions.create(model=f"bedrock/{arn}", messages=USER)
    theirs, ours = upstream.requests
    assert ours.raw_path == theirs.raw_path
    assert json.loads(ours.body) == json.loads(theirs.body)
    signed = [re.search(r"SignedHeaders=([^,]+)", r.headers["authorization"]) for r in (theirs, ours)]
    assert signed[0] is not None and signed[1] is not None and signed[0][1] == signed[1][1]
    assert_signed(upstream, theirs)
    assert_signed(upstream, ours)


def test_a_bedrock_api_key_is_sent_as_bearer_without_signing(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(bedrock_doc(upstream, api_key="env:BEDROCK_KEY"), ENV)
    reply(upstream, "converse.json")
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="claude", messages=USER)
    headers = upstream.requests[-1].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in headers and "x-amz-security-token" not in headers


def test_system_prompts_multi_turn_and_inference_config(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "converse.json")
    client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "First."},
            {"role": "user", "content": [{"type": "text", "text": "Second."}]},
            {"role": "assistant", "content": "Sure:  "},
        ],
        max_completion_tokens=300,
        temperature=0.2,
        top_p=0.9,
        stop=["END", "STOP"],
        user="user-42",
    )
    assert sent(upstream) == {
        "system": [{"text": "You are terse."}, {"text": "Answer in English."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hi."}]},
            {"role": "assistant", "content": [{"text": "Hello."}]},
            {"role": "user", "content": [{"text": "First."}, {"text": "Second."}]},
            {"role": "assistant", "content": [{"text": "Sure:"}]},  # a prefill, trailing space cut
        ],
        "inferenceConfig": {
            "maxTokens": 300,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END", "STOP"],
        },
    }


def test_reasoning_content_comes_back_as_reasoning_content(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "converse_reasoning.json")
    raw = client.chat.completions.with_raw_response.create(model="claude", messages=USER, max_tokens=50)
    data = json.loads(raw.content)
    validate_openai("CreateChatCompletionResponse", data)
    message = data["choices"][0]["message"]
    assert message["content"] == "27 x 453 = 12,231."
    assert message["reasoning_content"] == "The user asks for 27 * 453. 27 * 453 = 12231."
    assert sent(upstream)["inferenceConfig"] == {"maxTokens": 50}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(
    upstream: Upstream, client: openai.OpenAI, stop_reason: str, finish: str
) -> None:
    reply(upstream, "converse_guardrail.json", stopReason=stop_reason)
    raw = client.chat.completions.with_raw_response.create(model="claude", messages=USER)
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    assert raw.parse().choices[0].finish_reason == finish


# --------------------------------------------------------------------------- images


def test_a_data_url_image_becomes_an_image_block(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "converse.json")
    client.chat.completions.create(
        model="claude",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
                ],
            }
        ],
    )
    assert sent(upstream)["messages"][0]["content"] == [
        {"text": "What is in this?"},
        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQSkZJRg=="}}},
    ]


def test_an_http_image_url_is_refused_by_name(upstream: Upstream, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="claude",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}],
                }
            ],
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "messages[0].content[0]"
    assert body["code"] == "unsupported_feature" and "data URL" in body["message"]
    assert upstream.requests == []


# --------------------------------------------------------------------------- tools and JSON


WEATHER = {
    "type": "function",
    "function": {
        "name": "top_song",
        "description": "Get the most popular song played on a radio station.",
        "parameters": {
            "type": "object",
            "properties": {"sign": {"type": "string"}},
            "required": ["sign"],
        },
    },
}


def test_tools_go_out_as_tool_specs_and_tool_calls_come_back(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    reply(upstream, "converse_tool_use.json")
    raw = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=[{"role": "user", "content": "What is the most popular song on WZPZ?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll look up the most popular song on WZPZ."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q" and call.function.name == "top_song"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"sign": "WZPZ"}  # type: ignore[union-attr]
    assert sent(upstream)["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "top_song",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},  # type: ignore[index]
                    "description": "Get the most popular song played on a radio station.",
                }
            }
        ],
        "toolChoice": {"any": {}},
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"auto": {}}),
        ({"type": "function", "function": {"name": "top_song"}}, {"tool": {"name": "top_song"}}),
    ],
)
def test_tool_choice_forms(upstream: Upstream, client: openai.OpenAI, choice: Any, expected: Any) -> None:
    reply(upstream, "converse.json")
    client.chat.completions.create(model="claude", messages=USER, tools=[WEATHER], tool_choice=choice)  # type: ignore[list-item]
    assert sent(upstream)["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_leaves_the_tools_out(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "converse.json")
    client.chat.completions.create(model="claude", messages=USER, tools=[WEATHER], tool_choice="none")  # type: ignore[list-item]
    assert "toolConfig" not in sent(upstream)


HISTORY: list[Any] = [
    {"role": "user", "content": "Top songs on WZPZ and WKRP?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "tooluse_1",
                "type": "function",
                "function": {"name": "top_song", "arguments": '{"sign": "WZPZ"}'},
            },
            {
                "id": "tooluse_2",
                "type": "function",
                "function": {"name": "top_song", "arguments": '{"sign": "WKRP"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "tooluse_1", "content": "Elemental Hotel, by 8 Storey Hike"},
    {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "Unknown"}]},
]


def test_a_tool_round_trip_becomes_tool_use_and_merged_tool_result_blocks(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    reply(upstream, "converse.json")
    client.chat.completions.create(model="claude", tools=[WEATHER], messages=HISTORY)  # type: ignore[list-item]
    assert sent(upstream)["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song", "input": {"sign": "WZPZ"}}},
                {"toolUse": {"toolUseId": "tooluse_2", "name": "top_song", "input": {"sign": "WKRP"}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tooluse_1",
                        "content": [{"text": "Elemental Hotel, by 8 Storey Hike"}],
                    }
                },
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "Unknown"}]}},
            ],
        },
    ]


def test_tool_choice_none_with_tool_history_is_refused(upstream: Upstream, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude", tools=[WEATHER], tool_choice="none", messages=HISTORY)  # type: ignore[list-item]
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "tool_choice"
    assert upstream.requests == []


def test_structured_outputs_use_a_forced_tool_and_come_back_as_json_text(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    answer = fixture_json("converse_tool_use.json", "bedrock")
    answer["output"]["message"]["content"] = [
        {"toolUse": {"toolUseId": "tooluse_9", "name": "json_output", "input": {"city": "Paris"}}}
    ]
    upstream.reply_json(answer)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    raw = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    choice = raw.parse().choices[0]
    assert json.loads(choice.message.content or "") == {"city": "Paris"}
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    config = sent(upstream)["toolConfig"]
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": schema}
    assert config["toolChoice"] == {"tool": {"name": "json_output"}}


# --------------------------------------------------------------------------- streams


def test_a_streamed_answer_with_usage(upstream: Upstream, gateway: Gateway) -> None:
    reply_stream(upstream, frames("stream_text.json"))
    chunks = stream_chunks(gateway, stream_options={"include_usage": True})
    assert {c["id"] for c in chunks} == {f"chatcmpl-{REQUEST_ID}"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello! How can I help you today?"
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop"]
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (12 + 20, 14)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 20
    sent(upstream, "converse-stream")
    assert_signed(upstream, upstream.requests[-1])


def test_frames_split_across_reads_are_reassembled(upstream: Upstream, gateway: Gateway) -> None:
    whole = b"".join(frames("stream_text.json"))
    reply_stream(upstream, [whole[i : i + 7] for i in range(0, len(whole), 7)])
    chunks = stream_chunks(gateway)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello! How can I help you today?"
    assert "usage" not in chunks[-1] or chunks[-1]["usage"] is None


def test_a_streamed_tool_call_is_assembled_by_the_sdk(upstream: Upstream, client: openai.OpenAI) -> None:
    reply_stream(upstream, frames("stream_tool_use.json"))
    stream = client.chat.completions.create(model="claude", messages=USER, tools=[WEATHER], stream=True)  # type: ignore[list-item]
    text, reasoning, name, call_id, arguments, finish = "", "", "", "", "", None
    for chunk in stream:
        validate_openai("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for call in delta.tool_calls or ():
            assert call.index == 0
            call_id += call.id or ""
            name += (call.function.name or "") if call.function else ""
            arguments += (call.function.arguments or "") if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Let me check that for you."
    assert reasoning == "The user wants WZPZ's top song; top_song can tell."
    assert (call_id, name) == ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "top_song")
    assert json.loads(arguments) == {"sign": "WZPZ"}
    assert finish == "tool_calls"


def test_streamed_structured_output_comes_back_as_content(upstream: Upstream, gateway: Gateway) -> None:
    messages = [
        frame({":message-type": "event", ":event-type": "messageStart"}, b'{"role":"assistant"}'),
        frame(
            {":message-type": "event", ":event-type": "contentBlockStart"},
            b'{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t1","name":"json_output"}}}',
        ),
        frame(
            {":message-type": "event", ":event-type": "contentBlockDelta"},
            b'{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\\"city\\": \\"Paris\\"}"}}}',
        ),
        frame({":message-type": "event", ":event-type": "messageStop"}, b'{"stopReason":"tool_use"}'),
    ]
    reply_stream(upstream, messages)
    chunks = stream_chunks(gateway, response_format={"type": "json_object"})
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert json.loads(text) == {"city": "Paris"}
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"])
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


@pytest.mark.parametrize(
    ("fixture", "words"),
    [("stream_throttled.json", "Too many tokens"), ("stream_model_error.json", "model failed")],
)
def test_an_exception_mid_stream_ends_the_stream_with_an_error(
    upstream: Upstream, client: openai.OpenAI, fixture: str, words: str
) -> None:
    reply_stream(upstream, frames(fixture))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="claude", messages=USER, stream=True):
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIStatusError)
    assert words in caught.value.message
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Once upon"
    assert all(not c.choices or c.choices[0].finish_reason is None for c in received)


def test_an_error_message_mid_stream_is_an_upstream_error(upstream: Upstream, client: openai.OpenAI) -> None:
    error = frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    reply_stream(upstream, [*frames("stream_text.json")[:2], error])
    with pytest.raises(openai.APIError) as caught:
        list(client.chat.completions.create(model="claude", messages=USER, stream=True))
    assert not isinstance(caught.value, openai.APIStatusError)
    assert "InternalFailure" in caught.value.message and "boom" in caught.value.message


def test_a_corrupt_frame_and_a_truncated_stream_are_errors(upstream: Upstream, client: openai.OpenAI) -> None:
    good = frames("stream_text.json")
    corrupt = bytearray(good[1])
    corrupt[-8] ^= 0xFF  # a payload byte: the message CRC no longer matches
    for messages in ([good[0], bytes(corrupt), *good[2:]], good[:4]):
        reply_stream(upstream, messages)
        with pytest.raises(openai.APIError) as caught:
            list(client.chat.completions.create(model="claude", messages=USER, stream=True))
        assert not isinstance(caught.value, openai.APIStatusError)


def test_a_streaming_answer_that_is_not_an_event_stream_is_refused(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    reply(upstream, "converse.json")
    with pytest.raises(openai.APIStatusError) as caught:
        list(client.chat.completions.create(model="claude", messages=USER, stream=True))
    assert caught.value.status_code == 502


# --------------------------------------------------------------------------- errors and gaps


@pytest.mark.parametrize(
    ("fixture", "status", "exception", "code"),
    [
        ("error_validation.json", 400, openai.BadRequestError, None),
        ("error_too_long.json", 400, openai.BadRequestError, "context_length_exceeded"),
        ("error_access_denied.json", 403, openai.InternalServerError, "upstream_auth_error"),
        ("error_throttling.json", 429, openai.RateLimitError, None),
        ("error_internal.json", 500, openai.InternalServerError, "upstream_server_error"),
        ("error_unavailable.json", 503, openai.InternalServerError, "upstream_unavailable"),
    ],
)
def test_bedrock_errors_reach_the_client_as_openai_errors(
    upstream: Upstream,
    client: openai.OpenAI,
    fixture: str,
    status: int,
    exception: type[Exception],
    code: str | None,
) -> None:
    upstream.reply_json(fixture_bytes(fixture, "bedrock"), status)
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="claude", messages=USER)
    error = caught.value
    assert isinstance(error, openai.APIStatusError)
    assert isinstance(error.body, dict) and error.body.get("code") == code
    assert SECRET not in str(error.body) and KEY_ID not in str(error.body)
    if status < 500 and status != 403:
        assert error.status_code == status
        assert json.loads(fixture_bytes(fixture, "bedrock"))["message"] == error.body["message"]


def test_throttling_is_retried_and_a_validation_error_is_not(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    doc = bedrock_doc(upstream)
    doc["routing"] = {"retries": {"attempts": 2, "backoff_base": "1ms", "backoff_max": "1ms"}}
    gateway = start_gateway(doc, ENV)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        upstream.reply_json(fixture_bytes("error_throttling.json", "bedrock"), 429)
        reply(upstream, "converse.json")
        assert client.chat.completions.create(model="claude", messages=USER).choices[0].message.content
        assert len(upstream.requests) == 2
        upstream.clear()
        upstream.reply_json(fixture_bytes("error_validation.json", "bedrock"), 400)
        reply(upstream, "converse.json")
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="claude", messages=USER)
        assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"temperature": 1.5}, "temperature"),
        ({"n": 2}, "n"),
        ({"parallel_tool_calls": False, "tools": [WEATHER]}, "parallel_tool_calls"),
    ],
)
def test_parameters_converse_lacks_are_refused_by_name(
    upstream: Upstream, client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude", messages=USER, **extra)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param
    assert upstream.requests == []


def test_dropping_is_a_per_provider_choice(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(bedrock_doc(upstream, unsupported_params="drop"), ENV)
    reply(upstream, "converse.json")
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="claude", messages=USER, logit_bias={"1": 1}, seed=3)
    assert sent(upstream) == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}


def test_embeddings_from_a_chat_model_are_refused_by_name(upstream: Upstream, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="claude", input="hello")
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "model"
    assert MODEL in caught.value.body["message"]
    assert upstream.requests == []


def test_the_model_list_comes_from_the_control_plane_signed(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    upstream.reply_json(
        {
            "modelSummaries": [
                {"modelId": "anthropic.claude-3-haiku-20240307-v1:0", "providerName": "Anthropic"},
                {"modelId": "meta.llama3-8b-instruct-v1:0", "providerName": "Meta"},
            ]
        }
    )
    names = {m.id for m in client.models.list()}
    assert {
        "claude",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "bedrock/meta.llama3-8b-instruct-v1:0",
    } <= names
    recorded = upstream.requests[-1]
    assert (recorded.method, recorded.path) == ("GET", "/foundation-models")
    assert recorded.query == {"byOutputModality": "TEXT"}
    assert_signed(upstream, recorded)


# --------------------------------------------------------------------------- configuration


def _settings(provider: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    doc = {"providers": {"bedrock": {"type": "bedrock", **provider}}}
    return build_settings(doc, environ or {}, source="test").providers["bedrock"]


def _problems(provider: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _settings(provider, environ)
    return caught.value.problems


def test_region_and_access_keys_come_from_the_environment_by_default() -> None:
    environ = {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
    }
    settings = _settings({}, environ)
    assert settings.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    aws = settings.aws
    assert aws.region == "eu-west-1" and settings.api_key is None
    assert (aws.access_key_id.reveal(), aws.secret_access_key.reveal(), aws.session_token.reveal()) == (
        KEY_ID,
        SECRET,
        TOKEN,
    )
    assert SECRET not in repr(settings) and TOKEN not in repr(settings)
    assert _settings({}, {**environ, "AWS_REGION": "us-west-2"}).aws.region == "us-west-2"


def test_a_bedrock_api_key_from_the_environment_wins_as_in_aws_sdks() -> None:
    environ = {"AWS_REGION": REGION, "AWS_BEARER_TOKEN_BEDROCK": API_KEY, "AWS_ACCESS_KEY_ID": KEY_ID}
    settings = _settings({}, environ)
    assert settings.api_key.reveal() == API_KEY and settings.aws.access_key_id is None
    # with an explicit base_url, a Bedrock API key needs no region
    assert (
        _settings({"api_key": "env:K", "base_url": "https://vpce.example.com"}, {"K": API_KEY}).aws.region
        is None
    )


@pytest.mark.parametrize(
    ("provider", "environ", "expected"),
    [
        (
            {"aws": {"access_key_id": KEY_ID, "secret_access_key": "env:S"}},
            {"S": SECRET},
            "providers.bedrock.aws.region: required",
        ),
        ({"aws": {"region": REGION}}, {}, "providers.bedrock.aws.access_key_id: required"),
        ({"aws": {"region": "US East"}}, {}, "providers.bedrock.aws.region: not an AWS region"),
        (
            {"aws": {"region": REGION, "access_key_id": KEY_ID, "secret_access_key": SECRET}},
            {},
            "providers.bedrock.aws.secret_access_key: secrets must not be written",
        ),
        (
            {"aws": {"region": REGION, "access_key_id": KEY_ID}},
            {},
            "providers.bedrock.aws.secret_access_key: required",
        ),
        (
            {
                "aws": {
                    "region": REGION,
                    "access_key_id": "wJalrXUtnFEMI/K7MDENG",
                    "secret_access_key": "env:S",
                }
            },
            {"S": SECRET},
            "providers.bedrock.aws.access_key_id: not an AWS access key id",
        ),
        (
            {
                "api_key": "env:S",
                "aws": {"region": REGION, "access_key_id": KEY_ID, "secret_access_key": "env:S"},
            },
            {"S": SECRET},
            "providers.bedrock.aws: give either api_key",
        ),
        ({"aws": {"region": REGION, "profile": "x"}}, {}, "providers.bedrock.aws.profile: unknown key"),
    ],
)
def test_configuration_errors_name_their_path(
    provider: dict[str, Any], environ: dict[str, str], expected: str
) -> None:
    problems = _problems(provider, environ)
    assert any(p.startswith(expected) for p in problems), problems
    assert not any(SECRET in p for p in problems)


def test_zero_config_needs_the_bedrock_endpoint_variable() -> None:
    environ = {"AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    assert "bedrock" not in load_settings(None, environ).providers
    url = "https://vpce-0a1b.bedrock-runtime.us-east-1.vpce.amazonaws.com"
    settings = load_settings(None, {**environ, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url})
    assert settings.providers["bedrock"].base_url == url
    assert settings.models["bedrock/*"].targets[0].provider == "bedrock"


def test_only_bedrock_providers_take_an_aws_block() -> None:
    doc = {"providers": {"o": {"type": "openai", "api_key": "env:K", "aws": {"region": REGION}}}}
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, {"K": "sk"}, source="test")
    assert any(p.startswith("providers.o.aws: only Bedrock providers") for p in caught.value.problems)


def test_botocore_is_loaded_only_when_a_bedrock_provider_is_configured() -> None:
    code = (
        "import sys, turnout.app, turnout.providers.registry, turnout.config.loader\n"
        "assert 'botocore' not in sys.modules, 'botocore imported eagerly'\n"
        "import turnout.providers.bedrock.adapter\n"
        "assert 'botocore' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- embeddings (InvokeModel)


TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V1 = "amazon.titan-embed-text-v1"
COHERE_V3 = "cohere.embed-english-v3"
COHERE_V4 = "cohere.embed-v4:0"
TOKEN_COUNT = "X-Amzn-Bedrock-Input-Token-Count"


def invoked(upstream: Upstream, recorded: Recorded, model: str) -> dict[str, Any]:
    """The InvokeModel body of `recorded`, checked to go to `model` (one percent-encoded path
    segment, as the Converse paths) and to be signed."""
    assert recorded.method == "POST"
    assert recorded.raw_path == f"/model/{quote(model, safe='')}/invoke"
    assert recorded.path == f"/model/{model}/invoke"
    assert recorded.headers["content-type"] == "application/json"
    assert_signed(upstream, recorded)
    body: dict[str, Any] = recorded.json
    return body


def embed(client: openai.OpenAI, model: str, **options: Any) -> tuple[dict[str, Any], Any]:
    """The raw answer (validated against OpenAI's spec) and the SDK's parsed one."""
    raw = client.embeddings.with_raw_response.create(model=f"bedrock/{model}", **options)
    data = json.loads(raw.content)
    # the spec describes `embedding` as floats: base64 ones are validated decoded
    decoded = [
        {**d, "embedding": unb64(d["embedding"])} if isinstance(d["embedding"], str) else d
        for d in data["data"]
    ]
    validate_openai("CreateEmbeddingResponse", {**data, "data": decoded})
    return data, raw.parse()


def unb64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def titan_vector(text: str) -> list[float]:
    n = int(text.rsplit(" ", 1)[-1])
    return [n + 0.5, -n - 0.25, 0.125]  # exact in float32


def reply_titan_per_text(upstream: Upstream, times: int, in_flight: list[int]) -> None:
    """Titan answers made from each request's text ("text <n>"): the first inputs answer last, so
    that only the adapter's ordering puts them back in input order. `in_flight` records
    [now, most] concurrent requests."""

    async def action(request: web.Request) -> web.StreamResponse:
        text = (await request.json())["inputText"]
        n = int(text.rsplit(" ", 1)[-1])
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.02 * (times - n))
        in_flight[0] -= 1
        answer = fixture_json("embed_titan_v2.json", "bedrock")
        vector = titan_vector(text)
        answer.update(embedding=vector, inputTextTokenCount=n + 1, embeddingsByType={"float": vector})
        return web.json_response(answer)

    upstream.then(action, times)


def test_titan_v2_embeds_one_text_per_signed_invoke(upstream: Upstream, client: openai.OpenAI) -> None:
    answer = fixture_json("embed_titan_v2.json", "bedrock")
    upstream.reply_json(answer, headers={TOKEN_COUNT: "99"})  # the body's own count wins
    data, result = embed(client, TITAN_V2, input="Hello world", encoding_format="float")
    assert data["data"][0]["embedding"] == answer["embedding"]
    assert result.data[0].index == 0 and result.model == TITAN_V2
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (6, 6)
    [recorded] = upstream.requests
    assert invoked(upstream, recorded, TITAN_V2) == {
        "inputText": "Hello world",
        "normalize": True,
        "embeddingTypes": ["float"],
    }
    assert recorded.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"


def test_titan_v2_embeds_a_list_concurrently_bounded_and_in_input_order(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    texts = [f"text {n}" for n in range(12)]
    in_flight = [0, 0]
    reply_titan_per_text(upstream, len(texts), in_flight)
    _, result = embed(client, TITAN_V2, input=texts, encoding_format="float")
    assert [d.index for d in result.data] == list(range(12))
    assert [d.embedding for d in result.data] == [titan_vector(t) for t in texts]
    assert result.usage.prompt_tokens == sum(n + 1 for n in range(12))
    assert len(upstream.requests) == 12
    sent_texts = [invoked(upstream, r, TITAN_V2)["inputText"] for r in upstream.requests]
    assert sorted(sent_texts) == sorted(texts)
    assert 1 < in_flight[1] <= 8


def test_base64_embeddings_decode_to_the_floats(upstream: Upstream, client: openai.OpenAI) -> None:
    answer = fixture_json("embed_titan_v2.json", "bedrock")
    upstream.reply_json(answer)
    data, _ = embed(client, TITAN_V2, input="Hello world", encoding_format="base64")
    encoded = data["data"][0]["embedding"]
    assert isinstance(encoded, str)
    vector = answer["embedding"]
    assert unb64(encoded) == pytest.approx(vector) and len(unb64(encoded)) == len(vector)
    # the SDK asks for base64 by default and decodes it
    upstream.reply_json(answer)
    decoded = client.embeddings.create(model=f"bedrock/{TITAN_V2}", input="Hello world")
    assert decoded.data[0].embedding == pytest.approx(vector)


def test_titan_v2_dimensions_are_sent_and_checked(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_json(fixture_json("embed_titan_v2.json", "bedrock"))
    embed(client, TITAN_V2, input="Hello world", dimensions=256, encoding_format="float")
    assert invoked(upstream, upstream.requests[-1], TITAN_V2)["dimensions"] == 256
    upstream.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=f"bedrock/{TITAN_V2}", input="Hello world", dimensions=300)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "dimensions"
    assert "256, 512 or 1024" in caught.value.body["message"]
    assert upstream.requests == []


def test_titan_g1_takes_the_text_only(upstream: Upstream, client: openai.OpenAI) -> None:
    answer = fixture_json("embed_titan_v1.json", "bedrock")
    upstream.reply_json(answer)
    _, result = embed(client, TITAN_V1, input="Hello", encoding_format="float")
    assert result.data[0].embedding == answer["embedding"] and result.usage.prompt_tokens == 4
    assert invoked(upstream, upstream.requests[-1], TITAN_V1) == {"inputText": "Hello"}
    upstream.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=f"bedrock/{TITAN_V1}", input="Hello", dimensions=256)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "dimensions"
    assert upstream.requests == []


@pytest.mark.parametrize("fixture", ["embed_cohere_by_type.json", "embed_cohere_floats.json"])
def test_cohere_embeds_a_batch_in_one_call_with_the_header_token_count(
    upstream: Upstream, client: openai.OpenAI, fixture: str
) -> None:
    answer = fixture_json(fixture, "bedrock")
    upstream.reply_json(answer, headers={TOKEN_COUNT: "17"})
    texts = answer["texts"]
    _, result = embed(client, COHERE_V3, input=texts, encoding_format="float")
    expected = fixture_json("embed_cohere_floats.json", "bedrock")["embeddings"]
    assert [d.embedding for d in result.data] == expected
    assert result.usage.prompt_tokens == 17
    [recorded] = upstream.requests
    assert invoked(upstream, recorded, COHERE_V3) == {
        "texts": texts,
        "input_type": "search_document",
        "embedding_types": ["float"],
        "truncate": "NONE",
    }


def test_cohere_batches_96_texts_a_call_and_estimates_usage_without_the_header(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    async def action(request: web.Request) -> web.StreamResponse:
        texts = (await request.json())["texts"]
        vectors = [[float(t.rsplit(" ", 1)[-1]), 0.5] for t in texts]
        await asyncio.sleep(0.05 if len(texts) == 96 else 0)  # the first batch answers last
        return web.json_response({"embeddings": {"float": vectors}, "response_type": "embeddings_by_type"})

    upstream.then(action, 2)
    texts = [f"passage {n}" for n in range(100)]
    _, result = embed(client, "cohere.embed-multilingual-v3", input=texts, encoding_format="float")
    assert [d.embedding for d in result.data] == [[float(n), 0.5] for n in range(100)]
    sizes = sorted(
        len(invoked(upstream, r, "cohere.embed-multilingual-v3")["texts"]) for r in upstream.requests
    )
    assert sizes == [4, 96]
    assert result.usage.prompt_tokens == 400  # counted by tokenizer: "passage N" is 4 tokens each


def test_cohere_dimensions_only_where_the_model_has_them(upstream: Upstream, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=f"bedrock/{COHERE_V3}", input="Hello", dimensions=512)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "dimensions"
    assert upstream.requests == []
    answer = fixture_json("embed_cohere_by_type.json", "bedrock")
    upstream.reply_json({**answer, "embeddings": {"float": answer["embeddings"]["float"][:1]}})
    embed(client, COHERE_V4, input="Hello", dimensions=512, encoding_format="float")
    assert invoked(upstream, upstream.requests[-1], COHERE_V4)["output_dimension"] == 512


@pytest.mark.parametrize(
    "model", ["meta.llama3-8b-instruct-v1:0", "amazon.titan-embed-image-v1", "us.anthropic.claude-x"]
)
def test_other_models_are_refused_by_name(upstream: Upstream, client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=f"bedrock/{model}", input="Hello")
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "model" and body["code"] == "unsupported_feature"
    assert f"'{model}'" in body["message"]
    assert upstream.requests == []


def test_a_cross_region_profile_of_an_embedding_model_is_recognised(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    upstream.reply_json(fixture_json("embed_cohere_floats.json", "bedrock"), headers={TOKEN_COUNT: "9"})
    embed(client, f"us.{COHERE_V4}", input=["a", "b"], encoding_format="float")
    assert invoked(upstream, upstream.requests[-1], f"us.{COHERE_V4}")["texts"] == ["a", "b"]


@pytest.mark.parametrize(
    ("fixture", "status", "exception"),
    [
        ("error_throttling.json", 429, openai.RateLimitError),
        ("error_invoke_validation.json", 400, openai.BadRequestError),
    ],
)
def test_invoke_errors_are_mapped(
    upstream: Upstream, client: openai.OpenAI, fixture: str, status: int, exception: type[Exception]
) -> None:
    upstream.reply_json(fixture_bytes(fixture, "bedrock"), status)
    with pytest.raises(exception) as caught:
        client.embeddings.create(model=f"bedrock/{COHERE_V3}", input="Hello", encoding_format="float")
    assert isinstance(caught.value, openai.APIStatusError) and caught.value.status_code == status
    assert fixture_json(fixture, "bedrock")["message"] in str(caught.value)


def test_one_failed_text_fails_the_list(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_json(fixture_json("embed_titan_v2.json", "bedrock"))
    upstream.reply_json(fixture_bytes("error_throttling.json", "bedrock"), 429, times=2)
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=f"bedrock/{TITAN_V2}", input=["a", "b", "c"])


def test_embeddings_with_a_bedrock_api_key(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(bedrock_doc(upstream, api_key="env:BEDROCK_KEY"), ENV)
    upstream.reply_json(fixture_json("embed_titan_v2.json", "bedrock"))
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.embeddings.create(model=f"bedrock/{TITAN_V2}", input="Hello")
    recorded = upstream.requests[-1]
    assert recorded.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in recorded.headers
