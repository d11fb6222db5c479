"""The in-memory key index the hot path authenticates against (no database round trip)."""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from turnout.domain.errors import AuthenticationFailed, ServiceUnavailable
from turnout.domain.principal import Principal
from turnout.keys.hashing import has_key_shape, hash_key

MAX_KEY_LENGTH = 512


MISS_TTL = 5.0  # seconds an unknown key is not looked up in the database again
MAX_MISSES = 10_000
STALE_READ = 60.0  # seconds a change is remembered, to refuse reads of the store it overtook

Lookup = Callable[[bytes], Awaitable[Principal | None]]


class KeyIndex:
    """Every key this instance knows, by hash. A key it does not know is looked up in the store
    (`lookup`) before it is refused, so a key issued on another instance works here at once; a
    store that cannot be reached makes that a 503, never an "invalid key". Only a key of the shape
    virtual keys have is looked up (junk is refused without a query), and unknown keys are
    remembered for `MISS_TTL`, so a flood of bad keys costs one lookup each at most.

    A key read from the store is applied with the time the read began (`read_at`) and dropped if
    the key changed here since, so a slow read can never bring back a key revoked meanwhile: a
    change made here `touch`es its keys before it writes and applies them once it committed.
    `as_of` is the wall-clock time up to which changes in the store are in the index (`keys.sync`
    follows them from there)."""

    def __init__(self, secret: bytes, lookup: Lookup | None = None) -> None:
        self._secret = secret
        self._by_hash: dict[bytes, Principal] = {}
        self.lookup = lookup
        self._misses: dict[bytes, float] = {}
        self._changed: OrderedDict[bytes, float] = OrderedDict()  # when each key last changed here
        self.as_of: dt.datetime | None = None

    def hash(self, key: str) -> bytes:
        return hash_key(self._secret, key)

    def add(self, key_hash: bytes, principal: Principal, read_at: float | None = None) -> bool:
        """Make the key resolve to `principal`. With `read_at` (`time.monotonic()` when the read
        it comes from began), not if the key changed here since: False then."""
        if read_at is not None and not self.unchanged_since(key_hash, read_at):
            return False
        self._by_hash[key_hash] = principal
        self._misses.pop(key_hash, None)
        self._changed_now(key_hash)
        return True

    def remove(self, key_hash: bytes) -> None:
        self._by_hash.pop(key_hash, None)
        self._changed_now(key_hash)

    def touch(self, key_hash: bytes) -> None:
        """A change to this key is under way: what a read begun before now found is not applied."""
        self._changed_now(key_hash)

    def get(self, key_hash: bytes) -> Principal | None:
        return self._by_hash.get(key_hash)

    def hashes_of(self, key_id: str) -> list[bytes]:
        """The hashes resolving to the key `key_id` (a scan: for rare changes, not the hot path)."""
        return [key_hash for key_hash, p in self._by_hash.items() if p.key_id == key_id]

    def unchanged_since(self, key_hash: bytes, read_at: float) -> bool:
        now = time.monotonic()
        if read_at <= now - STALE_READ:
            return False  # too old to tell
        changed = self._changed.get(key_hash)
        return changed is None or changed < read_at

    def _changed_now(self, key_hash: bytes) -> None:
        now = time.monotonic()
        self._changed[key_hash] = now
        self._changed.move_to_end(key_hash)
        while self._changed:
            oldest, at = next(iter(self._changed.items()))
            if at > now - STALE_READ:
                break
            del self._changed[oldest]

    def __len__(self) -> int:
        return len(self._by_hash)

    async def resolve(self, key: str | None) -> Principal:
        """`authenticate`, asking the store about a key this instance does not know."""
        try:
            return self.authenticate(key)
        except AuthenticationFailed as refused:
            if refused.code != "invalid_api_key" or self.lookup is None or not key or not has_key_shape(key):
                raise  # the store holds virtual keys only: one that cannot be one is not looked for
            key_hash = hash_key(self._secret, key)
            if self._misses.get(key_hash, 0.0) > time.monotonic():
                raise
            for _ in range(2):  # again if the key changed here while it was looked up
                read_at = time.monotonic()
                try:
                    principal = await self.lookup(key_hash)
                except Exception:
                    raise ServiceUnavailable(
                        "turnout cannot check this API key right now (its key store is unreachable); "
                        "try again shortly.",
                        code="key_store_unavailable",
                    ) from None
                if principal is None:
                    if key_hash in self._by_hash:
                        break  # added meanwhile (`keys.sync`)
                    if len(self._misses) >= MAX_MISSES:
                        self._misses.clear()
                    self._misses[key_hash] = read_at + MISS_TTL
                    raise
                if self.add(key_hash, principal, read_at=read_at):
                    break
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
