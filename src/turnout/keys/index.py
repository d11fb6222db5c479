"""The in-memory key index the hot path authenticates against (no database round trip)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from turnout.domain.errors import AuthenticationFailed, ServiceUnavailable
from turnout.domain.principal import Principal
from turnout.keys.hashing import hash_key

MAX_KEY_LENGTH = 512


MISS_TTL = 5.0  # seconds an unknown key is not looked up in the database again
MAX_MISSES = 10_000

Lookup = Callable[[bytes], Awaitable[Principal | None]]


class KeyIndex:
    """Every key this instance knows, by hash. A key it does not know is looked up in the store
    (`lookup`) before it is refused, so a key issued on another instance works here at once; a
    store that cannot be reached makes that a 503, never an "invalid key". Unknown keys are
    remembered for `MISS_TTL`, so a flood of bad keys costs one lookup each at most."""

    def __init__(self, secret: bytes, lookup: Lookup | None = None) -> None:
        self._secret = secret
        self._by_hash: dict[bytes, Principal] = {}
        self.lookup = lookup
        self._misses: dict[bytes, float] = {}

    def hash(self, key: str) -> bytes:
        return hash_key(self._secret, key)

    def add(self, key_hash: bytes, principal: Principal) -> None:
        self._by_hash[key_hash] = principal

    def remove(self, key_hash: bytes) -> None:
        self._by_hash.pop(key_hash, None)

    def __len__(self) -> int:
        return len(self._by_hash)

    async def resolve(self, key: str | None) -> Principal:
        """`authenticate`, asking the store about a key this instance does not know."""
        try:
            return self.authenticate(key)
        except AuthenticationFailed as refused:
            if (
                refused.code != "invalid_api_key"
                or self.lookup is None
                or not key
                or len(key) > MAX_KEY_LENGTH
            ):
                raise
            key_hash = hash_key(self._secret, key)
            now = time.monotonic()
            if self._misses.get(key_hash, 0.0) > now:
                raise
            try:
                principal = await self.lookup(key_hash)
            except Exception:
                raise ServiceUnavailable(
                    "turnout cannot check this API key right now (its key store is unreachable); "
                    "try again shortly.",
                    code="key_store_unavailable",
                ) from None
            if principal is None:
                if len(self._misses) >= MAX_MISSES:
                    self._misses.clear()
                self._misses[key_hash] = now + MISS_TTL
                raise
        self.add(key_hash, principal)
        return self.authenticate(key)

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
