"""Counting tokens with a real tokenizer, for requests whose upstream reported no usage: OpenAI's
o200k_base (GPT-4o, GPT-4.1, GPT-5, o-series) for every provider. For OpenAI's current models
that is their count; for other providers' models, whose tokenizers differ, it is an estimate.

toktok-rs holds o200k_base compiled into its extension module: nothing is read from disk or
downloaded, ever (tiktoken itself fetches its BPE files from the internet on first use).

Building the encoder costs about 62 MiB of memory and 0.3 s with the GIL held. The server pays it
before it listens (`preload`), not on first use: built lazily, it stalled every stream in flight
for 0.3 s the first time an answer went unreported or outgrew the resume copy, and its memory
appeared in the middle of serving, where a per-stream memory bound cannot tell it from a leak.
"""

from __future__ import annotations

from collections.abc import Iterable

import toktok  # type: ignore[import-untyped]  # ships no type information

ENCODING = "o200k_base"

# Counted exactly up to this many characters in one call; the rest is extrapolated at the rate
# counted so far. Counting runs on the event loop, at about 10 (random Unicode) to 300
# (repetitive text) million characters a second, 80 MB/s on prose and code: this cap keeps one
# call under about 25 ms whatever the input, where 4 million characters counted whole could take
# 0.45 s.
EXACT_CHARACTERS = 1 << 18


def preload() -> None:
    """Build the encoder now rather than on first use. It takes about 0.3 s and 62 MiB and holds
    the GIL throughout (a thread does not spare the event loop): call it before serving."""
    toktok.batch_count(("",), ENCODING, threads=1)


def count_tokens(texts: Iterable[str]) -> int:
    """The o200k_base tokens in `texts`, as ordinary text (a special token's spelling counts as
    the text it is). Past EXACT_CHARACTERS in all, the rest is estimated at the rate counted."""
    exact: list[str] = []
    room = EXACT_CHARACTERS
    rest = 0
    for text in texts:
        if len(text) <= room:
            exact.append(text)
            room -= len(text)
        else:
            if room:
                exact.append(text[:room])
            rest += len(text) - room
            room = 0
    counted = int(sum(toktok.batch_count(exact, ENCODING, threads=1)))
    if rest:
        counted += -(-rest * counted // EXACT_CHARACTERS)  # the same rate, rounded up
    return counted


def utf8_length(text: str) -> int:
    """The bytes of `text` in UTF-8 (an ASCII string's length; `isascii` is O(1) in CPython)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def count_exactly(texts: Iterable[str]) -> int:
    """The o200k_base tokens of `texts`, each counted on its own and in full, however long (unlike
    `count_tokens`, never extrapolated). Counting releases the GIL: a long text can be counted in
    a worker thread without holding up the event loop."""
    return int(sum(toktok.batch_count(list(texts), ENCODING, threads=1)))
