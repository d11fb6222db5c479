"""Is a master key strong enough to guard the whole gateway? At least 32 characters, not a shorter
string repeated, and an estimated 128 bits of entropy or more (see `estimated_bits`)."""

from __future__ import annotations

import itertools
import math
import string
from collections import Counter

MIN_LENGTH = 32
MIN_BITS = 128
HOW_TO_GENERATE = (
    "generate one with: python3 -c \"import secrets; print('sk-' + secrets.token_urlsafe(32))\" "
    "(or: openssl rand -hex 32)"
)

# the characters a guesser must try for each class a key draws on
_CLASSES = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset(string.punctuation + " "), 33),
)
_OTHER = 100  # any character outside printable ASCII


def estimated_bits(key: str) -> int:
    """A conservative estimate of a key's entropy: its length times the least of (a) log2 of the
    alphabet its character classes span, (b) the Shannon entropy of its characters and (c) that of
    the steps between consecutive characters, so that few distinct characters, a repeated pattern
    or a run such as `abcdef…` count for little."""
    if not key:
        return 0
    present = set(key)
    pool = sum(size for chars, size in _CLASSES if present & chars)
    if any(not any(c in chars for chars, _ in _CLASSES) for c in present):
        pool += _OTHER
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(key)]
    per_character = min(math.log2(pool), _shannon(key), _shannon(steps) if steps else 0.0)
    return int(len(key) * per_character)


def weakness(key: str) -> str | None:
    """Why `key` is too weak to be a master key (None if it is strong), without showing it."""
    if len(key) < MIN_LENGTH:
        return f"is too short ({len(key)} characters; at least {MIN_LENGTH} are needed)"
    for period in range(1, len(key) // 2 + 1):
        if len(key) % period == 0 and key[:period] * (len(key) // period) == key:
            return f"is a {period}-character string repeated"
    bits = estimated_bits(key)
    if bits < MIN_BITS:
        return f"is too easy to guess (about {bits} bits of entropy; at least {MIN_BITS} are needed)"
    return None


def _shannon(symbols: str | list[int]) -> float:
    counts = Counter(symbols)
    total = len(symbols)
    return -sum(n / total * math.log2(n / total) for n in counts.values())
