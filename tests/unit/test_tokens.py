"""Token counts by o200k_base: the ids OpenAI's tiktoken gives (checked against it, with the
published o200k_base file), counted with no network and no cache, and bounded on huge input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import toktok  # type: ignore[import-untyped]

from turnout.domain import tokens
from turnout.domain.chat import (
    counted_prompt_tokens,
    counted_usage,
    estimated_text_tokens,
    parse_chat_request,
)
from turnout.domain.tokens import count_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 2),  # [24912, 2375]
        ("Hello, world!", 4),  # [13225, 11, 2375, 0]
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("こんにちは世界", 2),  # [95839, 28428]: o200k_base holds whole Japanese words
        ("🚀", 2),  # [112927, 222]: one emoji, two byte-level tokens
        ("<|endoftext|>", 7),  # a special token's spelling in a prompt is ordinary text
    ],
)
def test_o200k_base_counts_as_tiktoken_does(text: str, expected: int) -> None:
    assert count_tokens([text]) == expected


def test_several_texts_are_counted_apiece() -> None:
    # counted together, "hello" "world" would be one text of 2 tokens as well; apart, each is 1
    assert count_tokens(["hello", "world", "Hello, world!"]) == 1 + 1 + 4
    assert estimated_text_tokens(iter(["hello world", "🚀"])) == 4


def test_the_encoding_is_inside_the_package_no_download_no_cache(tmp_path: Path) -> None:
    """A fresh interpreter, with every socket refused and empty cache directories, builds the
    encoder and counts: nothing is fetched, nothing is read from or written to a cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    script = textwrap.dedent(
        """
        import sys
        opened = []
        def guard(event, args):
            if event.startswith("socket."):
                raise OSError(f"no network here: {event}")
            if event == "open" and isinstance(args[0], str):
                opened.append(args[0])
        sys.addaudithook(guard)
        from turnout.domain.tokens import count_tokens
        print(count_tokens(["hello world"]))
        print(sorted(p for p in opened if "tiktoken" in p or "o200k" in p))
        """
    )
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(cache),
        "DATA_GYM_CACHE_DIR": str(cache),
        "XDG_CACHE_HOME": str(cache),
        "HOME": str(tmp_path),
        "HTTPS_PROXY": "http://127.0.0.1:9",  # were anything to try, it would fail fast
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["2", "[]"]
    assert list(cache.iterdir()) == []


def test_huge_input_is_counted_exactly_up_to_the_cap_and_extrapolated_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted: list[int] = []
    real = toktok.batch_count

    def batch_count(texts: list[str], encoding: str, threads: int) -> list[int]:
        counted.append(sum(len(t) for t in texts))
        return real(texts, encoding, threads=threads)  # type: ignore[no-any-return]

    monkeypatch.setattr(toktok, "batch_count", batch_count)
    big = "hello world " * 400_000  # 4.8 million characters: 800,001 tokens (a space ends it)
    total = count_tokens(["hello world", big])
    assert counted == [tokens.EXACT_CHARACTERS]  # never more than the cap reaches the tokenizer
    assert total == pytest.approx(2 + 800_001, rel=1e-4)  # the rest at the rate counted: 800,008

    monkeypatch.setattr(tokens, "EXACT_CHARACTERS", 100)
    counted.clear()
    # 100 characters counted ("a" * 100 is 13 tokens: runs of 8), the last 50 at that rate
    assert count_tokens(["a" * 100, "b" * 50]) == 13 + 7
    assert counted == [100]


def test_a_chat_request_counts_its_messages_and_tool_calls() -> None:
    request = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Hello, world!"},
                {"role": "user", "content": [{"type": "text", "text": "hello world"}]},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "hello", "arguments": "{}"}}
                    ],
                },
            ],
        }
    )
    # 4 + 2 + "hello" (1) + "{}" (1), and the chat framing: 3 a message and its role (1), 3
    # priming the answer
    assert counted_prompt_tokens(request) == 8 + 3 * (3 + 1) + 3


def test_usage_with_no_upstream_count_is_tokenized_and_flagged_estimated() -> None:
    request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hello world"}]})
    usage = counted_usage(request, ["Hello, world!"])
    # the prompt's 2 tokens and the chat format's framing: 3 and the role for its one message, 3
    # for the answer
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (2 + 3 + 1 + 3, 4, True)
    assert counted_usage(request).output_tokens == 0  # nothing was produced
