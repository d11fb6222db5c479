"""The bounds a reservation is made of: a prompt at a token a UTF-8 byte is never below what a
byte-level tokenizer counts (a token a character can be), and OpenAI's documented count is met."""

from __future__ import annotations

from turnout.domain.chat import counted_prompt_tokens, parse_chat_request
from turnout.domain.prompt_bounds import byte_bound, o200k_bound, output_bound
from turnout.domain.tokens import count_exactly

EXAMPLE = {  # the API reference's example: its answer reports 19 prompt tokens
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "developer", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ],
}


def test_the_reference_example_counts_as_openai_reports_it() -> None:
    request = parse_chat_request(EXAMPLE)
    assert o200k_bound(request) == 19
    assert counted_prompt_tokens(request) == 19  # what an unreported answer is billed
    assert byte_bound(request) > 19  # the cheap bound is above it


def test_text_that_takes_more_tokens_than_characters_stays_within_the_byte_bound() -> None:
    # Fraktur letters, emoji, a rare Cyrillic letter: several tokens a character in o200k_base
    texts = [
        "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",
        "\U0001f600\U0001f389\U0001f680",
        "\ua66e\ua66e\ua66e",
    ]
    for text in texts:
        request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": text}]})
        tokens = count_exactly([text])
        assert tokens > len(text)  # a token a character would have reserved too little
        assert o200k_bound(request) >= tokens
        assert byte_bound(request) >= o200k_bound(request)


def test_every_choice_is_reserved() -> None:
    request = parse_chat_request({**EXAMPLE, "max_tokens": 10, "n": 3})
    assert output_bound(request) == 30


def test_tool_calls_names_and_definitions_are_within_the_bound() -> None:
    request = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?", "name": "ann"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "w", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
        }
    )
    plain = 3 + 1 + count_exactly(["weather?"]) + count_exactly(["ann"]) + 1
    assert o200k_bound(request) > plain + 3  # the rest at their byte bound
    assert byte_bound(request) >= o200k_bound(request)
