"""Write the seed inputs of every fuzz target into tests/fixtures/fuzz/<target>/seed-*, from the
recorded provider fixtures (streams, error bodies) and a few hand-written requests. Run it from the
repository's root after a fixture changes: `.venv/bin/python tests/fuzz/seed_corpus.py`. Inputs
kept beside the seeds (crash-*: failures found by fuzzing; regression-*) are never rewritten."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from support.fuzz import CORPUS, admin_bodies, eventstream_message, string_header  # noqa: E402

PROVIDERS = ROOT / "fixtures" / "providers"

USER = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CHAT = {
    "text": {"model": "gpt-4o", "messages": [USER]},
    "everything": {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": WEATHER}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.5,
        "max_tokens": 100,
        "stop": ["\n\n"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "seed": 7,
        "user": "u-1",
        "metadata": {"ticket": "7"},
    },
    "json_schema": {
        "model": "gpt-4o",
        "messages": [USER],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": WEATHER["parameters"], "strict": True},
        },
    },
}
EMBEDDINGS = {
    "text": {"model": "embed", "input": "hello"},
    "texts": {"model": "embed", "input": ["hello", "world"], "encoding_format": "base64", "dimensions": 8},
    "tokens": {"model": "embed", "input": [[1, 2, 3], [4]]},
}
ANTHROPIC = {
    "text": {"model": "claude", "max_tokens": 100, "messages": [USER]},
    "tools": {
        "model": "claude",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            USER,
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                ],
            },
        ],
        "tools": [{"name": "get_weather", "input_schema": WEATHER["parameters"]}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "stop_sequences": ["END"],
        "stream": True,
        "metadata": {"user_id": "u-1"},
    },
}
RESPONSES = {
    "text": {"model": "gpt-4o", "input": "Hello", "instructions": "Be brief."},
    "items": {
        "model": "gpt-4o",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        "tools": [{"type": "function", **WEATHER}],
        "text": {"format": {"type": "json_schema", "name": "w", "schema": WEATHER["parameters"]}},
        "reasoning": {"effort": "low"},
        "max_output_tokens": 100,
        "store": False,
        "stream": True,
    },
}


def example(info: msgspec.inspect.Type) -> Any:
    """A plausible value of a msgspec type (the first choice of every union and literal)."""
    if isinstance(info, msgspec.inspect.StructType):
        return {f.encode_name: example(f.type) for f in info.fields}
    if isinstance(info, msgspec.inspect.UnionType):
        return example(next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)))
    if isinstance(info, msgspec.inspect.LiteralType):
        return info.values[0]
    if isinstance(info, msgspec.inspect.ListType):
        return [example(info.item_type)]
    if isinstance(info, msgspec.inspect.DictType):
        return {"k": "v"}
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        return 1
    if isinstance(info, msgspec.inspect.BoolType):
        return True
    return "10"


MEDIA: dict[str, Any] = {
    "image": {"model": "dall-e-3", "prompt": "A red fox", "n": 1, "size": "1024x1792", "quality": "hd"},
    "speech": {"model": "tts-1", "voice": "alloy", "input": "Hello world", "speed": 1.25},
}


def _form(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b"multipart/form-data; boundary=b0undary\n"
    for name, value, filename in parts:
        named = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--b0undary\r\nContent-Disposition: {named}\r\n\r\n".encode() + value + b"\r\n"
    return out + b"--b0undary--\r\n"


FORMS = {
    "transcription": _form(("model", b"whisper-1", None), ("file", bytes(range(256)), "a.wav")),
    "verbose": _form(
        ("model", b"whisper-1", None),
        ("response_format", b"verbose_json", None),
        ("timestamp_granularities[]", b"word", None),
        ("file", b"RIFF\r\n--b0undar", 'speech "1".mp3'),
    ),
}
MEDIA_ANSWERS: dict[str, Any] = {
    "images": {
        "created": 1,
        "data": [{"url": "https://x/1.png"}],
        "usage": {"input_tokens": 5, "output_tokens": 9},
    },
    "verbose": {"language": "english", "duration": 61.4, "text": "hi", "segments": []},
    "json-duration": {"text": "hi", "usage": {"type": "duration", "seconds": 3}},
    "json-tokens": {
        "text": "hi",
        "usage": {"type": "tokens", "input_tokens": 9, "output_tokens": 2, "total_tokens": 11},
    },
}


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


def _bedrock_frames(messages: list[dict[str, Any]]) -> bytes:
    out = b""
    for m in messages:
        named = ":event-type" if m["type"] == "event" else ":exception-type"
        headers = [
            string_header(":message-type", m["type"]),
            string_header(named, m["name"]),
            string_header(":content-type", "application/json"),
        ]
        out += eventstream_message(headers, json.dumps(m["payload"]).encode())
    return out


def main() -> None:
    for folder in CORPUS.iterdir() if CORPUS.exists() else ():
        for old in folder.glob("seed-*"):
            old.unlink()
    for wire, target in (
        ("openai", "openai_stream"),
        ("anthropic", "anthropic_stream"),
        ("gemini", "gemini_stream"),
        ("cohere", "cohere_stream"),
    ):
        for path in sorted((PROVIDERS / wire).glob("*.sse")):
            _write(target, path.stem, path.read_bytes())
            _write("sse", f"{wire}-{path.stem}", path.read_bytes())
    for path in sorted((PROVIDERS / "bedrock").glob("stream_*.json")):
        frames = _bedrock_frames(json.loads(path.read_bytes()))
        _write("bedrock_stream", path.stem, frames)
        _write("eventstream", path.stem, frames)
    error_frame = eventstream_message(
        [string_header(":message-type", "error"), string_header(":error-code", "InternalFailure")], b""
    )
    _write("eventstream", "error-message", error_frame)
    for path in sorted(PROVIDERS.glob("*/error_*.json")):
        _write("error_body", f"{path.parent.name}-{path.stem}", b"429\n2\n" + path.read_bytes())
    for pattern in ("openai/chat_completion*.json", "anthropic/message*.json", "bedrock/converse*.json",
                    "gemini/generate_content.json", "gemini/function_call.json", "gemini/*_blocked.json",
                    "cohere/chat*.json"):  # fmt: skip
        for path in sorted(PROVIDERS.glob(pattern)):
            _write("answer", f"{path.parent.name}-{path.stem}", path.read_bytes())
    for target, bodies in (
        ("chat_request", CHAT),
        ("embedding_request", EMBEDDINGS),
        ("anthropic_request", ANTHROPIC),
        ("responses_request", RESPONSES),
    ):
        for name, body in bodies.items():
            _write(target, name, json.dumps(body, indent=1).encode())
    for name, body in MEDIA.items():
        _write("media_request", name, json.dumps(body, indent=1).encode())
    for name, form in FORMS.items():
        _write("multipart_form", name, form)
    for name, body in MEDIA_ANSWERS.items():
        _write("media_answer", name, json.dumps(body).encode())
    for name, kind in admin_bodies().items():
        body = example(msgspec.inspect.type_info(kind))
        _write("admin_body", name, name.encode() + b"\n" + json.dumps(body).encode())


if __name__ == "__main__":
    main()
