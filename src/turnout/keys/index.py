"""The in-memory key index the hot path authenticates against (no database round trip)."""

from __future__ import annotations

import time

from turnout.domain.errors import AuthenticationFailed
from turnout.domain.principal import Principal
from turnout.keys.hashing import hash_key

MAX_KEY_LENGTH = 512


class KeyIndex:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._by_hash: dict[bytes, Principal] = {}

    def hash(self, key: str) -> bytes:
        return hash_key(self._secret, key)

    def add(self, key_hash: bytes, principal: Principal) -> None:
        self._by_hash[key_hash] = principal

    def remove(self, key_hash: bytes) -> None:
        self._by_hash.pop(key_hash, None)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it in the Authorization header as "
                "'Bearer YOUR_KEY' (or in the x-api-key header).",
                code="missing_api_key",
            )
        principal = self._by_hash.get(hash_key(self._secret, key)) if len(key) <= MAX_KEY_LENGTH else None
        if principal is None:
            raise AuthenticationFailed("Incorrect API key provided.", code="invalid_api_key")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        return principal
