"""The text a cut-off answer still holds, in every wire format's field names, up to the cut."""

from __future__ import annotations

import json

from turnout.domain.chat import parse_chat_request
from turnout.domain.cut_answer import cut_answer_texts, cut_answer_usage


def test_openai_content_and_tool_arguments_up_to_the_cut() -> None:
    whole = json.dumps(
        {
            "choices": [
                {
                    "message": {
                        "content": 'Line one.\nShe said "hi" \u00e9t\u00e9',
                        "tool_calls": [{"function": {"name": "f", "arguments": '{"city": "Paris"}'}}],
                    }
                }
            ]
        }
    ).encode()
    assert cut_answer_texts(whole) == ['Line one.\nShe said "hi" \u00e9t\u00e9', '{"city": "Paris"}']
    cut = whole[: whole.index(b"arguments") + 20]
    last = cut_answer_texts(cut)[-1]
    assert last and len(last) < len('{"city": "Paris"}') and '{"city": "Paris"}'.startswith(last)


def test_a_cut_inside_an_escape_or_a_utf8_sequence_drops_only_that() -> None:
    assert cut_answer_texts(b'{"content": "caf\\u00') == ["caf"]
    assert cut_answer_texts(b'{"content": "tab\\') == ["tab"]
    assert cut_answer_texts('{"text": "na\u00ef'.encode()[:-1]) == ["na"]


def test_anthropic_and_gemini_text_fields() -> None:
    anthropic = b'{"content": [{"type": "text", "text": "Hello"}, {"type": "thinking", "thinking": "hm'
    assert cut_answer_texts(anthropic) == ["Hello", "hm"]
    gemini = b'{"candidates": [{"content": {"parts": [{"text": "Bonjour"}]}}]}'
    assert cut_answer_texts(gemini) == ["Bonjour"]


def test_the_usage_counts_the_prompt_and_what_arrived() -> None:
    request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    usage = cut_answer_usage(request, b'{"choices": [{"message": {"content": "one two three')
    assert usage.estimated and usage.input_tokens > 0 and usage.output_tokens == 3
    assert cut_answer_usage(request, b"").output_tokens == 0
