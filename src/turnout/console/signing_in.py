"""Who a console request acts as. Signing in exchanges an owner's, admin's or viewer's key for a
session; every later request reads that key again as it is now (revoked, expired, lowered to a
member: the session no longer works). Failed sign-ins count toward the same per-address limit as failed API
keys (`limits.auth_failures`, through the server's guard), so guessing keys here is as slow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from turnout.console.sessions import Session, Sessions
from turnout.domain.errors import AuthenticationFailed, PermissionDenied
from turnout.domain.key_policy import reads_as_admin
from turnout.domain.principal import Principal
from turnout.governance.people import MASTER_KEY_ID, PERSON_KEY_PREFIX, People
from turnout.keys.index import KeyIndex


class FailureGuard(Protocol):
    """The server's count of failed authentications per client address (server/auth_guard.py)."""

    def check(self, scope: Mapping[str, Any]) -> None: ...

    def failed(self, scope: Mapping[str, Any]) -> None: ...


NOT_ADMIN = "The console is for owners, admins and viewers; this key's role is '{role}'."
NO_KEY = bytes(32)  # the key_hash of a session that signed in through single sign-on


class SignInRefused(Exception):
    """Single sign-on (console/single_sign_on.py) ended without a session: the sign-in page is
    shown with `status` and `message`, and `headers` (the spent attempt's cookie)."""

    def __init__(self, status: int, message: str, *headers: tuple[bytes, bytes]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class SigningIn:
    def __init__(
        self, index: KeyIndex, people: People, sessions: Sessions, guard: FailureGuard | None
    ) -> None:
        self.index = index
        self.people = people
        self.sessions = sessions
        self.guard = guard

    async def sign_in(self, scope: Mapping[str, Any], key: str) -> tuple[str, Principal]:
        """(the new session's cookie token, who it acts as), or AuthenticationFailed (the failure
        counted against the address), PermissionDenied for a key that is not an admin's, 429 for
        an address over its limit."""
        if self.guard is not None:
            self.guard.check(scope)
        try:
            principal = await self.people.current(await self.index.resolve(key))
        except AuthenticationFailed:
            if self.guard is not None:
                self.guard.failed(scope)
            raise AuthenticationFailed("That key is not valid.", code="invalid_api_key") from None
        if not reads_as_admin(principal):
            raise PermissionDenied(NOT_ADMIN.format(role=principal.role))
        token, _ = await self.sessions.begin(principal.key_id, self.index.hash(key))
        return token, principal

    async def sign_in_person(self, user_id: str) -> tuple[str, Principal]:
        """A session for a person who signed in through single sign-on (console/single_sign_on.py):
        it acts as the user with their rights as they are at each request; PermissionDenied if
        they are no owner, admin or viewer now."""
        principal = await self.people.person(user_id)
        if principal is None:
            raise AuthenticationFailed("This user has been deleted.", code="invalid_api_key")
        if not reads_as_admin(principal):
            raise PermissionDenied(NOT_ADMIN.replace("this key's", "your").format(role=principal.role))
        token, _ = await self.sessions.begin(principal.key_id, NO_KEY)
        return token, principal

    async def caller(self, session: Session) -> Principal | None:
        """The session's key (or person) as it is now, if it may still use the console."""
        if session.key_id.startswith(PERSON_KEY_PREFIX):
            person = await self.people.person(session.key_id[len(PERSON_KEY_PREFIX) :])
            return person if person is not None and reads_as_admin(person) else None
        known = self.index.get(session.key_hash)
        if session.key_id == MASTER_KEY_ID or (known is not None and known.kind == "master"):
            # the master key is in no table when configured: the index is its record
            if known is None or known.kind != "master" or known.key_id != session.key_id:
                return None
            return known
        stub = known or Principal(key_id=session.key_id, name="", role="viewer")
        try:
            principal = await self.people.current(stub)
        except AuthenticationFailed:
            return None
        if principal.key_id != session.key_id or not reads_as_admin(principal):
            return None
        return principal
