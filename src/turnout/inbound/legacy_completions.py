"""OpenAI's legacy Completions API (`POST /v1/completions`: a prompt, not messages), still used by
many tools. To a deployment that serves it (OpenAI, Azure, vLLM, Ollama, llama.cpp ...) the request
goes whole and its answer comes back as it came; to any other, a single text prompt is translated
into one user message of a chat request, and the chat answer back into a `text_completion`. What
only the legacy API can do (several prompts, token prompts, `echo`, `suffix`, `logprobs`,
`best_of`) needs a deployment that serves it: without one, a 400 names it.

The legacy API's own default applies when translating: at most 16 tokens unless `max_tokens` says
otherwise (OpenAI's documented default for this endpoint).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from msgspec import UNSET

from turnout.domain.completions import ChatCompletion, ChatCompletionChunk, text_of
from turnout.domain.errors import InvalidRequest

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy endpoint (chat has none)
# Fields a chat request carries the same way, copied as they are when translating.
SHARED_FIELDS = (
    "model",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "seed",
    "max_tokens",
)
# Fields only the legacy API has: a request using them needs a deployment that serves it.
LEGACY_ONLY = ("echo", "suffix", "logprobs", "best_of")


def to_chat(body: Any, native_only: list[str]) -> dict[str, Any]:
    """The chat request a legacy request stands for; what it asks that chat cannot carry is added
    to `native_only` (its field names)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if "prompt" not in body:
        raise InvalidRequest(
            "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    prompt = _single_text(body["prompt"], native_only)
    for name in LEGACY_ONLY:
        value = body.get(name)
        if value is not None and value is not False and not (name == "best_of" and value == 1):
            native_only.append(name)
    chat: dict[str, Any] = {name: body[name] for name in SHARED_FIELDS if name in body}
    if chat.get("max_tokens") is None:
        chat["max_tokens"] = DEFAULT_MAX_TOKENS
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def _single_text(prompt: Any, native_only: list[str]) -> str:
    """The one text prompt to translate (""-placeholder when only a native deployment can take it)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]
        texts = all(isinstance(p, str) for p in prompt)
        tokens = all(isinstance(p, int) and not isinstance(p, bool) for p in prompt)
        token_lists = all(
            isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
            for p in prompt
        )
        if texts or tokens or token_lists:
            native_only.append("prompt (several prompts, or tokens)")
            return ""
    raise InvalidRequest(
        "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids.",
        param="prompt",
    )


def _finish(reason: str | None) -> str | None:
    """The legacy API knows stop, length and content_filter; a tool call ends as a stop."""
    return "stop" if reason in ("tool_calls", "function_call") else reason


def to_text_completion(answer: ChatCompletion, model: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": (answer.id or "cmpl-turnout").replace("chatcmpl-", "cmpl-", 1),
        "object": "text_completion",
        "created": answer.created or int(time.time()),
        "model": answer.model or model,
        "choices": [
            {
                "text": text_of(choice.message.content) if choice.message is not None else "",
                "index": choice.index,
                "logprobs": None,
                "finish_reason": _finish(choice.finish_reason),
            }
            for choice in answer.choices
        ],
    }
    if answer.usage is not UNSET and answer.usage is not None:
        out["usage"] = _usage_dict(answer.usage)
    return out


def _usage_dict(usage: Any) -> dict[str, int]:
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chunk_json(chunk: ChatCompletionChunk, model: str) -> bytes | None:
    """A chat chunk as a legacy stream event's data (None: nothing the legacy stream shows)."""
    choices = [
        {
            "text": text_of(c.delta.content) if c.delta is not None and c.delta.content is not UNSET else "",
            "index": c.index,
            "logprobs": None,
            "finish_reason": _finish(c.finish_reason),
        }
        for c in chunk.choices
    ]
    usage = chunk.usage if chunk.usage is not UNSET and chunk.usage is not None else None
    if not choices and usage is None:
        return None
    out: dict[str, Any] = {
        "id": (chunk.id or "cmpl-turnout").replace("chatcmpl-", "cmpl-", 1),
        "object": "text_completion",
        "created": chunk.created or int(time.time()),
        "model": chunk.model or model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = _usage_dict(usage)
    return orjson.dumps(out)
