"""What a non-streamed answer cut off mid-body still tells: the generated text in the part that
arrived, read from the broken JSON as far as it goes, so the attempt is billed for what the
provider produced (counted by turnout, flagged estimated) rather than for nothing."""

from __future__ import annotations

import re

import msgspec

from turnout.domain.chat import ChatRequest, counted_usage
from turnout.domain.usage import Usage

# The string fields that carry generated text in the answers of every wire format turnout speaks:
# OpenAI's `content`/`refusal`/tool `arguments` (and `reasoning_content` of its compatibles),
# Anthropic's, Gemini's, Cohere's and Bedrock's `text` (and Anthropic's `thinking`).
_TEXT_FIELD = re.compile(rb'"(?:content|text|refusal|arguments|reasoning_content|thinking)"\s*:\s*"')
_STRING_BODY = re.compile(rb'(?:[^"\\]|\\.)*', re.DOTALL)  # up to the closing quote or the cut

# Past this much recovered text, the rest is counted at the rate of what was (the tokenizer runs on
# the event loop; a 256 MiB body must not hold it for seconds).
COUNT_AT_MOST = 1 << 20


def cut_answer_texts(received: bytes) -> list[str]:
    """The generated texts in `received`, a JSON answer's first bytes; the last one may end where
    the body was cut."""
    texts = []
    position = 0
    while (field := _TEXT_FIELD.search(received, position)) is not None:
        body = _STRING_BODY.match(received, field.end())
        end = field.end() if body is None else body.end()
        texts.append(_unescape(received[field.end() : end]))
        position = end + 1
    return texts


def cut_answer_usage(request: ChatRequest, received: bytes) -> Usage:
    """turnout's count for an attempt whose answer was cut: the prompt, and the text that arrived."""
    text = "".join(cut_answer_texts(received))
    if len(text) <= COUNT_AT_MOST:
        return counted_usage(request, (text,))
    counted = counted_usage(request, (text[:COUNT_AT_MOST],))
    output = counted.output_tokens * len(text) // COUNT_AT_MOST
    return Usage(input_tokens=counted.input_tokens, output_tokens=output, estimated=True)


def _unescape(raw: bytes) -> str:
    """A JSON string's body as text; an escape or a UTF-8 sequence the cut split is dropped."""
    text = raw.decode("utf-8", "ignore")
    for trim in range(7):  # at most `\uXXXX` and a lone backslash can be left unfinished
        try:
            return msgspec.json.decode('"' + text[: len(text) - trim] + '"', type=str)
        except msgspec.DecodeError:
            continue
    return text
