"""The fake upstream's answers, in OpenAI's wire format, computed from the request (pure).

It echoes the last user message, calls a tool when tools are offered (arguments made up from the
tool's JSON schema), answers JSON in JSON mode, honours `n` and `logprobs`, streams in the
requested number of chunks, and embeds text into small deterministic unit vectors.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Iterator
from typing import Any

import orjson

from turnout.providers.fake.behaviour import Behaviour

EMBEDDING_DIMENSIONS = 8
MAX_EXAMPLE_DEPTH = 32
MAX_EMBEDDING_DIMENSIONS = 3072  # as many as OpenAI's largest embedding model gives


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: about four characters a token, at least one per word."""
    return max(len(text.split()), math.ceil(len(text) / 4)) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def prompt_tokens(request: dict[str, Any]) -> int:
    total = 0
    for message in request.get("messages", []):
        if isinstance(message, dict):
            total += 3 + count_tokens(_text_of(message.get("content")))
    return total + count_tokens(orjson.dumps(request.get("tools") or []).decode()) // 2


def example_for(schema: Any, depth: int = 0) -> Any:
    """A small value that satisfies a JSON schema (enough for demos and tests). A client's schema
    may be anything: what is not a schema here, or nests deeper than a demo needs, gives a string."""
    if not isinstance(schema, dict) or depth > MAX_EXAMPLE_DEPTH:
        return "example"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    props = schema.get("properties")
    if kind == "object" or isinstance(props, dict):
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(props)
        return {n: example_for(props[n], depth + 1) for n in names if isinstance(n, str) and n in props}
    if kind == "array":
        return [example_for(schema.get("items"), depth + 1)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), "example")


def _answer(request: dict[str, Any], b: Behaviour) -> str:
    if b.reply is not None:
        return b.reply
    messages = [m for m in request.get("messages", []) if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"The tool returned: {_text_of(last.get('content'))}"
    for message in reversed(messages):
        if message.get("role") == "user":
            return f"You said: {_text_of(message.get('content'))}"
    return "Hello from turnout's fake upstream."


def _content(request: dict[str, Any], b: Behaviour) -> str:
    text = _answer(request, b)
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return orjson.dumps(example_for(schema)).decode()
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return orjson.dumps({"answer": text}).decode()
    return text


def _tool_calls(request: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = request.get("tool_choice")
    messages = request.get("messages") or []
    if not tools or choice == "none" or not messages or messages[-1].get("role") != "user":
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        wanted = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t["function"].get("name") == wanted] or tools[:1]
    elif not (choice == "required" and request.get("parallel_tool_calls") is not False):
        tools = tools[:1]
    return [
        {
            "id": f"call_fake{i}",
            "type": "function",
            "function": {
                "name": t["function"]["name"],
                "arguments": orjson.dumps(example_for(t["function"].get("parameters"))).decode(),
            },
        }
        for i, t in enumerate(tools)
    ]


def _logprobs(text: str) -> dict[str, Any]:
    tokens = text.split(" ")
    return {
        "content": [
            {"token": tok, "logprob": -0.1, "bytes": list(tok.encode()), "top_logprobs": []} for tok in tokens
        ],
        "refusal": None,
    }


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(request: dict[str, Any], b: Behaviour, *, ident: str, created: int) -> dict[str, Any]:
    calls = _tool_calls(request)
    text = None if calls else _content(request, b)
    n = request.get("n") or 1
    choices = []
    for i in range(n):
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": i,
                "message": message,
                "logprobs": _logprobs(text) if request.get("logprobs") and text else None,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        )
    out = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": b.model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    }
    if b.usage:
        completion_tokens = n * count_tokens(text or orjson.dumps(calls).decode())
        out["usage"] = _usage(prompt_tokens(request), completion_tokens)
    return out


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, math.ceil(len(text) / pieces)) if text else 1
    parts = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    return parts + [""] * (pieces - len(parts)) if len(parts) < pieces else parts


def chunks(request: dict[str, Any], b: Behaviour, *, ident: str, created: int) -> Iterator[dict[str, Any]]:
    """Every chunk of a streamed answer, the usage chunk last (when the request asked for it)."""
    base = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": b.model,
        "system_fingerprint": "fp_fake",
    }
    options = request.get("stream_options")
    with_usage = b.usage and isinstance(options, dict) and options.get("include_usage")
    extra = {"usage": None} if with_usage else {}
    n = request.get("n") or 1
    calls = _tool_calls(request)
    text = None if calls else _content(request, b)

    def chunk(index: int, delta: dict[str, Any], finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            **extra,
        }

    for i in range(n):
        yield chunk(
            i, {"role": "assistant", "content": "" if text is not None else None, "refusal": None}, None
        )
    pieces = _split(orjson.dumps(calls).decode() if calls else text or "", b.chunks)
    for piece_no, piece in enumerate(pieces):
        for i in range(n):
            if calls:
                delta = {"tool_calls": _tool_call_delta(calls, piece_no, len(pieces))}
                yield chunk(i, delta, None)
            else:
                logprobs = _logprobs(piece) if request.get("logprobs") and piece else None
                yield chunk(i, {"content": piece}, None, logprobs)
    for i in range(n):
        yield chunk(i, {}, "tool_calls" if calls else "stop")
    if with_usage:
        completion_tokens = n * count_tokens(text or orjson.dumps(calls).decode())
        yield {**base, "choices": [], "usage": _usage(prompt_tokens(request), completion_tokens)}


def _tool_call_delta(calls: list[dict[str, Any]], piece_no: int, pieces: int) -> list[dict[str, Any]]:
    """Streamed tool calls: name and id in the first piece, arguments spread over the rest."""
    out = []
    for index, call in enumerate(calls):
        args = call["function"]["arguments"]
        parts = _split(args, pieces)
        fn: dict[str, Any] = {"arguments": parts[piece_no] if piece_no < len(parts) else ""}
        entry: dict[str, Any] = {"index": index, "function": fn}
        if piece_no == 0:
            entry["id"] = call["id"]
            entry["type"] = "function"
            fn["name"] = call["function"]["name"]
        out.append(entry)
    return out


def embeddings(request: dict[str, Any], b: Behaviour) -> dict[str, Any]:
    raw = request.get("input")
    if isinstance(raw, str):
        inputs: list[Any] = [raw]
    elif isinstance(raw, list) and raw and isinstance(raw[0], int):
        inputs = [raw]
    else:
        inputs = list(raw or [])
    dims = request.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dims, int) or not 1 <= dims <= MAX_EMBEDDING_DIMENSIONS:
        # the fake runs in the gateway's own event loop: a billion dimensions would stall it
        raise ValueError(f"'dimensions' must be between 1 and {MAX_EMBEDDING_DIMENSIONS}")
    data, tokens = [], 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += count_tokens(text) if isinstance(item, str) else len(item)
        vector = _vector(text, dims)
        value: Any = vector
        if request.get("encoding_format") == "base64":
            value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": b.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] ^ (i * 131)) % 255) / 127.0 - 1.0 for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]
