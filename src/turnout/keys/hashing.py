"""Keys are stored only as a keyed hash (HMAC-SHA256 with a secret kept apart from the database)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "sk-turnout-"
KEY_BYTES = 32
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 4
# what `new_key` makes: the prefix and 43 characters of the URL-safe base64 alphabet, nothing else
_TOKEN_LENGTH = len(secrets.token_urlsafe(KEY_BYTES))
_KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + "[A-Za-z0-9_-]{" + str(_TOKEN_LENGTH) + "}")


def new_key() -> str:
    """A fresh key: `sk-turnout-` and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def has_key_shape(key: str) -> bool:
    """Could `key` be one `new_key` made? (Checked before asking the store about a key.)"""
    return _KEY_SHAPE.fullmatch(key) is not None


def display_prefix(key: str) -> str:
    """What may be shown of a key after its creation: enough to recognise it, not to use it."""
    return key[:DISPLAY_PREFIX_LENGTH]


def hash_key(secret: bytes, key: str) -> bytes:
    return hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
