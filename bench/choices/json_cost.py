"""Cost of parsing, validating and re-serialising the benchmark's realistic request, per library.

Run: python bench/choices/json_cost.py   (needs orjson, msgspec, pydantic)
"""

from __future__ import annotations

import json
import timeit
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pydantic

from turnout.domain.chat import ChatRequest, parse_chat_request

BODY = (Path(__file__).resolve().parents[1] / "bodies" / "chat_10msg_2tools.json").read_bytes()


class PydanticRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    temperature: float | None = None
    max_tokens: int | None = None


typed = msgspec.json.Decoder(ChatRequest)
parsed = orjson.loads(BODY)


def cases() -> dict[str, Any]:
    return {
        "stdlib json loads + dumps": lambda: json.dumps(json.loads(BODY)).encode(),
        "orjson loads": lambda: orjson.loads(BODY),
        "orjson dumps": lambda: orjson.dumps(parsed),
        "msgspec typed decode (bytes)": lambda: typed.decode(BODY),
        "msgspec convert (dict -> typed)": lambda: msgspec.convert(parsed, ChatRequest),
        "pydantic validate_json": lambda: PydanticRequest.model_validate_json(BODY),
        "pydantic validate_json + dump": lambda: PydanticRequest.model_validate_json(BODY).model_dump_json(),
        "turnout: orjson loads + validate": lambda: parse_chat_request(orjson.loads(BODY)),
    }


if __name__ == "__main__":
    for name, fn in cases().items():
        per_call = min(timeit.repeat(fn, number=20000, repeat=5)) / 20000
        print(f"{name:36s} {per_call * 1e6:7.1f} us")
