"""Upper bounds of a chat request's tokens, for reserving the most it can cost before it is sent.

- `byte_bound`: cheap (one pass over the request, no tokenizer): every text at one token per
  UTF-8 byte. It holds for any tokenizer whose every token covers at least one byte of the text:
  byte-level BPE (OpenAI's cl100k and o200k, Llama 3, Mistral's Tekken, Cohere's, DeepSeek's) and
  SentencePiece with byte fallback (Gemma/Gemini, Llama 2, Mistral v1-v3), where a character
  missing from the vocabulary becomes one token per byte; SentencePiece's dummy prefix (one
  token per text) is within a message's framing allowance. A character is one to four bytes and
  a byte-level tokenizer can spend several tokens on one (an emoji, a rare CJK character), so one
  token per *character* is not a bound. Anthropic (Claude) and Amazon (Nova) do not publish their
  tokenizers: for them this is the same bound on the assumption that theirs are of this kind, as
  every published tokenizer of their generation is, not a proof.
- `o200k_bound`: OpenAI's own count for its models on o200k_base. Plain messages are counted
  as OpenAI documents (the cookbook "How to count tokens with tiktoken": 3 tokens a message, its
  role and content, its name and 1 more, 3 priming the answer); it gives the 19 prompt tokens of
  the API reference's example. Whatever OpenAI does not document the rendering of (tool calls,
  tool and function results, refusals, tool definitions, response formats, images) is counted at
  its byte bound, as in `byte_bound`.

Allowances, not proofs, where no provider documents its format: MESSAGE_OVERHEAD tokens of
framing a message, REQUEST_OVERHEAD for the request, a JSON definition (tools, a response
format) at its bytes, IMAGE_TOKENS an image. Text in several parts is counted part by part, plus
a token a join.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from turnout.domain.chat import (
    AssistantMessage,
    ChatRequest,
    DeveloperMessage,
    FunctionMessage,
    Message,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from turnout.domain.tokens import count_exactly, utf8_length

MESSAGE_OVERHEAD = 8  # tokens a message's framing can add (role, separators, a dummy prefix)
REQUEST_OVERHEAD = 16  # ... and the request's (the reply's priming)
IMAGE_TOKENS = 2_000  # the most one image is counted as (a full-size image on the dearest models)
DEFAULT_OUTPUT_RESERVE = 4096  # output tokens reserved for a request that sets no limit

TOKENS_PER_MESSAGE = 3  # OpenAI's documented framing: <|start|>{role}<|message|>{content}<|end|>
TOKENS_PER_NAME = 1
TOKENS_PER_ANSWER = 3  # <|start|>assistant<|message|>


def output_bound(request: ChatRequest | None) -> int:
    """The most output tokens `request` can be billed: its limit (else DEFAULT_OUTPUT_RESERVE) for
    each of its `n` choices."""
    if request is None:
        return 0
    limit = request.output_token_limit
    return (DEFAULT_OUTPUT_RESERVE if limit is None else limit) * (request.n or 1)


def byte_bound(request: ChatRequest | None) -> int:
    """At least the prompt tokens of `request` for any byte-level tokenizer (module docstring)."""
    if request is None:
        return 0
    total = REQUEST_OVERHEAD + _definitions(request)
    for message in request.messages:
        total += _message_bytes(message)
    return total


def o200k_bound(request: ChatRequest) -> int:
    """OpenAI's count of the prompt of `request` on an o200k_base model, where OpenAI documents it;
    the byte bound for the rest (module docstring)."""
    texts: list[str] = []
    total = TOKENS_PER_ANSWER + _definitions(request)
    for message in request.messages:
        if isinstance(message, ToolMessage | FunctionMessage) or _has_calls(message):
            total += _message_bytes(message)
            continue
        total += TOKENS_PER_MESSAGE + IMAGE_TOKENS * _images(message)
        texts.append(_role(message))
        parts = list(_content_texts(message))
        texts += parts
        total += max(len(parts) - 1, 0)  # a join may cost a token
        name = getattr(message, "name", None)
        if name:
            texts.append(name)
            total += TOKENS_PER_NAME
    return total + count_exactly(texts)


def prompt_length(request: ChatRequest) -> int:
    """The characters of the prompt's message text (what counting it costs grows with)."""
    return sum(len(text) for message in request.messages for text in _content_texts(message))


# ----------------------------------------------------------------------------- parts


def _role(message: Message) -> str:
    return str(type(message).__struct_config__.tag)


def _has_calls(message: Message) -> bool:
    return isinstance(message, AssistantMessage) and bool(
        message.tool_calls or message.function_call or message.refusal or message.audio
    )


def _content_texts(message: Message) -> Iterator[str]:
    content = getattr(message, "content", None)
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        yield from (p.text for p in content if p.text)


def _images(message: Message) -> int:
    content = getattr(message, "content", None)
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if part.type == "image_url")


def _message_bytes(message: Message) -> int:
    """A message at a token a byte: its texts (content, name, refusal, tool calls and their ids),
    its images at their most, and its framing allowance. (On every request's path: one function
    with a fast path for text content, not a generator per kind of text.)"""
    total = MESSAGE_OVERHEAD
    content = message.content
    if isinstance(content, str):
        total += len(content) if content.isascii() else utf8_length(content)
    elif content:  # parts: each text, a token a join, images at their most
        parts = 0
        for part in content:
            text = part.text
            if text:
                total += len(text) if text.isascii() else utf8_length(text)
                parts += 1
            if part.type == "image_url":
                total += IMAGE_TOKENS
        total += max(parts - 1, 0)
    if isinstance(message, _PLAIN):
        name = message.name
        return total if name is None else total + utf8_length(name)
    if isinstance(message, AssistantMessage):
        return total + _assistant_bytes(message)
    name = getattr(message, "name", None)
    if name:
        total += len(name) if name.isascii() else utf8_length(name)
    if isinstance(message, ToolMessage):
        call_id = message.tool_call_id
        total += len(call_id) if call_id.isascii() else utf8_length(call_id)
    return total


def _assistant_bytes(message: AssistantMessage) -> int:
    """An assistant message's texts besides its content: its name, refusal and calls (no
    generator: most requests carry a few of these)."""
    texts: list[str] = []
    if message.name:
        texts.append(message.name)
    if message.refusal:
        texts.append(message.refusal)
    if message.function_call is not None:
        texts += (message.function_call.name, message.function_call.arguments)
    for call in message.tool_calls or ():
        texts.append(call.id)
        if call.function is not None:
            texts += (call.function.name, call.function.arguments)
        if call.custom is not None:
            texts += (call.custom.name, call.custom.input)
    joined = "".join(texts)  # one pass: UTF-8 bytes add up over a join
    return len(joined) if joined.isascii() else utf8_length(joined)


_PLAIN = (SystemMessage, DeveloperMessage, UserMessage)  # content and a name, nothing else


def _definitions(request: ChatRequest) -> int:
    """Tool, function and response-format definitions at the bytes of their JSON."""
    total = 0
    for definitions in (request.tools, request.functions, request.response_format):
        if definitions:
            total += len(msgspec.json.encode(definitions))
    return total
