"""OpenAI's error answers, and those of the servers that speak its wire format (Azure OpenAI, vLLM,
Groq, Mistral, Ollama, the fake provider...), read for the error tree: `{"error": {"message", "type",
"param", "code"}}` and the shapes others use instead. The refusal kind comes from OpenAI's and
Azure's documented codes, and for servers without them from their documented phrases."""

from __future__ import annotations

from typing import Any

import orjson

from turnout.domain.errors import Refusal, TurnoutError
from turnout.providers.upstream_errors import UpstreamErrorBody, classify, mentions


def _squashed(code: str | None) -> str:
    """`ResponsibleAIPolicyViolation` and `responsible_ai_policy_violation` alike."""
    return (code or "").replace("_", "").lower()


# "The request is too long for this model": OpenAI's and Azure's codes, then how servers without
# them say it (vLLM: "This model's maximum context length is N tokens"; Mistral: "... too large
# for model with N maximum context length"; Groq, LiteLLM-style proxies: "context window").
CONTEXT_CODES = frozenset(
    map(_squashed, ("context_length_exceeded", "string_above_max_length", "context_window_exceeded"))
)
CONTEXT_PHRASES = (
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "input is too long",
)
# Refused on content policy: OpenAI's `content_policy_violation`, Azure OpenAI's `content_filter`
# (its `innererror.code` `ResponsibleAIPolicyViolation`).
POLICY_CODES = frozenset(
    map(
        _squashed,
        ("content_policy_violation", "content_filter", "content_filtered", "responsible_ai_policy_violation"),
    )
)

# The status an error inside a stream (which has none) stands for: from its code, else its type.
STATUS_OF_CODE = {
    "invalid_api_key": 401,
    "model_not_found": 404,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
}
STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 529,
}


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    """OpenAI's `{"error": {...}}`, and the shapes OpenAI-compatible servers use instead
    (`{"message": ...}`, FastAPI's `{"detail": ...}`, a bare string)."""
    return _body(_error_object(raw))


def stream_error(data: bytes, provider: str) -> TurnoutError:
    """The error for an error event inside a stream (`data: {"error": {...}}`, or an `event: error`
    whose data may not even be JSON): the status its numeric code or `status` gives (vLLM, Azure),
    else the one its code or type documents, else a server error."""
    err = _error_object(data)
    body = _body(err)
    return classify(_stream_status(err, body), body, provider=provider, in_stream=True)


def _error_object(raw: bytes) -> dict[str, Any] | str | None:
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, (str, dict)):
            return err
    return None


def _body(err: dict[str, Any] | str | None) -> UpstreamErrorBody:
    if err is None:
        return UpstreamErrorBody()
    if isinstance(err, str):
        return UpstreamErrorBody(message=err, refusal=_refusal(err, None, None))
    message = err.get("message") or err.get("detail") or err.get("msg")
    if isinstance(message, list):  # FastAPI validation details
        message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
    text = str(message) if message is not None else None
    code = _text(err.get("code"))
    inner = err.get("innererror")
    inner_code = _text(inner.get("code")) if isinstance(inner, dict) else None
    return UpstreamErrorBody(
        message=text,
        type=_text(err.get("type")),
        param=_text(err.get("param")),
        code=code,
        refusal=_refusal(text, code, inner_code),
    )


def _refusal(message: str | None, code: str | None, inner_code: str | None) -> Refusal | None:
    codes = {_squashed(code), _squashed(inner_code)}
    if codes & CONTEXT_CODES or mentions(message, CONTEXT_PHRASES):
        return "context_window"
    if codes & POLICY_CODES:
        return "content_policy"
    return None


def _stream_status(err: dict[str, Any] | str | None, body: UpstreamErrorBody) -> int:
    if isinstance(err, dict):
        for field in ("code", "status"):
            value = err.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
            if isinstance(value, str) and len(value) == 3 and value.isascii() and value.isdigit():
                return int(value)
    return STATUS_OF_CODE.get(body.code or "") or STATUS_OF_TYPE.get(body.type or "", 500)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
