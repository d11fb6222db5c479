"""A batch's input file (JSON Lines, OpenAI's documented format) read line by line with strict
bounds: each line one request object `{custom_id, method: POST, url, body}` for an endpoint turnout
batches, every line for the same model and endpoint, custom ids unique. Read once to check it and
bound what it can use; written again with the deployment's model (and path) in every line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from turnout.domain.chat import parse_chat_request
from turnout.domain.embeddings import parse_embedding_request
from turnout.domain.errors import InvalidRequest, TurnoutError
from turnout.domain.json_body import loads
from turnout.domain.prompt_bounds import byte_bound, output_bound
from turnout.domain.steering_fields import refuse_steering_fields

MAX_LINES = 50_000  # OpenAI's documented limit of requests in one batch
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_CUSTOM_ID = 512
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")  # the `url` a line may name


@dataclass(frozen=True)
class BatchInput:
    """What a checked input file asks for: one model, one endpoint, and the most its lines use."""

    model: str
    endpoint: str
    lines: int
    max_input_tokens: int
    max_output_tokens: int


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(number, line) of every non-empty line (`\\n` or `\\r\\n` ended)."""
    number = 0
    start = 0
    size = len(data)
    while start < size:
        end = data.find(b"\n", start)
        if end < 0:
            end = size
        number += 1
        line = data[start:end].rstrip(b"\r")
        start = end + 1
        if line.strip():
            if len(line) > MAX_LINE_BYTES:
                raise _bad(number, f"is longer than {MAX_LINE_BYTES} bytes")
            yield number, line


def read_batch_input(data: bytes) -> BatchInput:
    """The file checked line by line (400 naming the first bad line and what is wrong with it)."""
    model: str | None = None
    endpoint: str | None = None
    seen: set[str] = set()
    count = input_tokens = output_tokens = 0
    for number, line in _lines(data):
        count += 1
        if count > MAX_LINES:
            raise InvalidRequest(
                f"The file has more than {MAX_LINES} requests, the most a batch may hold.",
                param="file",
                code="invalid_batch_file",
            )
        custom_id, url, body = _request(number, line)
        if custom_id in seen:
            raise _bad(number, f"repeats the custom_id '{custom_id[:100]}'")
        seen.add(custom_id)
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise _bad(number, "has no 'model' in its body")
        if model is None:
            model, endpoint = name, url
        elif name != model or url != endpoint:
            raise _bad(
                number, f"names another model or url than line 1 ({model}, {endpoint}); a batch has one"
            )
        prompt, output = _bound(number, url, body)
        input_tokens += prompt
        output_tokens += output
    if model is None or endpoint is None:
        raise InvalidRequest("The file holds no request.", param="file", code="invalid_batch_file")
    return BatchInput(model, endpoint, count, input_tokens, output_tokens)


def _request(number: int, line: bytes) -> tuple[str, str, dict[str, Any]]:
    try:
        doc = loads(line)
    except TurnoutError as error:
        raise _bad(number, f"is not valid JSON ({error.message})") from None
    if not isinstance(doc, dict):
        raise _bad(number, "is not a JSON object")
    unknown = sorted(set(doc) - {"custom_id", "method", "url", "body"})
    if unknown:
        raise _bad(number, f"has unknown fields: {', '.join(unknown)[:200]}")
    custom_id, method, url, body = (doc.get(k) for k in ("custom_id", "method", "url", "body"))
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
        raise _bad(number, f"needs a 'custom_id' of 1-{MAX_CUSTOM_ID} characters")
    if method != "POST":
        raise _bad(number, "needs 'method': 'POST'")
    if url not in ENDPOINTS:
        raise _bad(number, f"needs 'url' to be one of {', '.join(ENDPOINTS)}")
    if not isinstance(body, dict):
        raise _bad(number, "needs a 'body' object")
    if body.get("stream"):
        raise _bad(number, "asks for a stream, which a batch cannot give")
    try:
        refuse_steering_fields(body)
    except TurnoutError as error:
        raise _bad(number, f"has a forbidden field: {error.message}") from None
    return custom_id, str(url), body


def _bound(number: int, url: str, body: dict[str, Any]) -> tuple[int, int]:
    """The most tokens (prompt, output) the line's request can be billed."""
    try:
        if url == "/v1/embeddings":
            parse_embedding_request(body)
            return len(orjson.dumps(body.get("input"))), 0
        request = parse_chat_request(body)
    except TurnoutError as error:
        raise _bad(number, f"has an invalid body: {error.message}") from None
    return byte_bound(request), output_bound(request)


def rewritten(data: bytes, model: str, path_prefix: str = "/v1") -> bytes:
    """The file (checked by `read_batch_input`) with every line's model replaced by `model` and its
    url under `path_prefix` (Azure names paths without `/v1`)."""
    out = []
    for _, line in _lines(data):
        doc = orjson.loads(line)
        doc["body"]["model"] = model
        doc["url"] = path_prefix + doc["url"][len("/v1") :]
        out.append(orjson.dumps(doc))
    out.append(b"")
    return b"\n".join(out)


def _bad(number: int, why: str) -> InvalidRequest:
    return InvalidRequest(f"Line {number} of the file {why}.", param="file", code="invalid_batch_file")
