"""Keys are stored only as a keyed hash (HMAC-SHA256 with a secret kept apart from the database)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "sk-turnout-"
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 4


def new_key() -> str:
    """A fresh key: `sk-turnout-` and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    """What may be shown of a key after its creation: enough to recognise it, not to use it."""
    return key[:DISPLAY_PREFIX_LENGTH]


def hash_key(secret: bytes, key: str) -> bytes:
    return hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
