"""Signing in to the console through an OpenID Connect provider (`console.oidc`).

`GET <root>/login/oidc` sends the browser to the provider with a fresh `state`, `nonce` and PKCE
challenge, the three kept in a short-lived HttpOnly cookie (SameSite=Lax: the provider's redirect
back is a navigation from another site, on which a Strict cookie is not sent). `GET
<root>/login/oidc/callback` checks the `state` against that cookie, exchanges the code with the
verifier, verifies the ID token (console/oidc.py) and finds the turnout user with that verified
email (case-insensitively). A person no user has is refused, unless `allow_signup` is set: then a
user with the role member is created (who cannot use the console until an admin raises the
role). The session then acts as that user, with their rights as they are at each request
(governance/people.py, `People.person`).
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from collections.abc import Callable

import sqlalchemy as sa

from turnout.config.settings import OidcSettings
from turnout.console.oidc import Attempt, Identity, OidcClient, SignOnFailed
from turnout.console.rendering import Renderer
from turnout.console.sessions import Sessions
from turnout.console.signing_in import FailureGuard, SigningIn, SignInRefused
from turnout.console.web import Request, Response, cookie, redirect
from turnout.domain.errors import TurnoutError
from turnout.domain.principal import Role
from turnout.governance.people import master_principal
from turnout.providers.http.client import HttpClient
from turnout.storage.database import Database
from turnout.storage.tables import users
from turnout.teams.directory import Directory

log = logging.getLogger("turnout.console")

ATTEMPT_COOKIE = "turnout_oidc"
ATTEMPT_TTL = 600  # seconds a person has at the provider
HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
PROVIDER_ERROR = re.compile(r"[a-z_]{1,64}")
SIGNUP_ROLE: Role = "member"  # no console: a viewer reads the whole organisation


class SingleSignOn:
    def __init__(
        self,
        settings: OidcSettings,
        root: str,
        *,
        http: HttpClient,
        database: Database,
        directory: Directory,
        signing_in: SigningIn,
        sessions: Sessions,
        renderer: Renderer,
        guard: FailureGuard | None,
        session_cookie: str,
        session_ttl: int,
    ) -> None:
        self.settings = settings
        self.root = root
        self.client = OidcClient(settings, http)
        self.database = database
        self.directory = directory
        self.signing_in = signing_in
        self.sessions = sessions
        self.renderer = renderer
        self.guard = guard
        self.session_cookie = session_cookie
        self.session_ttl = session_ttl

    @property
    def start_path(self) -> str:
        return self.root + "/login/oidc"

    def redirect_uri(self, request: Request) -> str:
        host = request.header(b"host") or ""
        if not HOST.fullmatch(host):
            raise SignOnFailed("This request names no usable host.")
        return f"{'https' if request.secure else 'http'}://{host}{self.root}/login/oidc/callback"

    async def start(self, request: Request, next_page: str) -> Response:
        """Off to the provider, carrying this attempt's secrets in a cookie only this path reads."""
        if self.guard is not None:
            self.guard.check(request.scope)
        attempt = Attempt.new()
        try:
            url = await self.client.authorization_url(attempt, self.redirect_uri(request))
        except SignOnFailed as error:
            raise SignInRefused(503, str(error)) from None
        carried = ".".join((attempt.state, attempt.nonce, attempt.verifier, _encode(next_page)))
        return redirect(url, self._attempt_cookie(request, carried, ATTEMPT_TTL))

    async def finish(self, request: Request, next_of: Callable[[str], str]) -> Response:
        """The provider's redirect back: `code` and `state`, or `error`."""
        carried = request.cookies.get(ATTEMPT_COOKIE, "")
        parts = carried.split(".") if len(carried) <= 3000 else []
        spent = self._attempt_cookie(request, "", 0)
        error = request.query.get("error")
        if error is not None:
            kind = error if PROVIDER_ERROR.fullmatch(error) else "an error"
            raise SignInRefused(403, f"The sign-in provider did not sign you in ({kind}).", spent)
        if len(parts) != 4:
            raise SignInRefused(
                403, "This sign-in did not start here, or took over 10 minutes; start again.", spent
            )
        attempt = Attempt(parts[0], parts[1], parts[2])
        state, code = request.query.get("state", ""), request.query.get("code", "")
        if not secrets.compare_digest(state.encode(), attempt.state.encode()):
            self._failed(request)
            raise SignInRefused(
                403, "This sign-in's state does not match the one this browser began; start again.", spent
            )
        if not code or len(code) > 2000:
            raise SignInRefused(400, "The sign-in provider sent no authorization code.", spent)
        try:
            identity = await self.client.identify(attempt, code, self.redirect_uri(request))
        except SignOnFailed as error:
            self._failed(request)
            log.warning("console single sign-on refused: %s", error)
            raise SignInRefused(403, str(error), spent) from None
        try:
            user_id = await self.user_of(identity)
            token, principal = await self.signing_in.sign_in_person(user_id)
        except SignOnFailed as error:
            raise SignInRefused(403, str(error), spent) from None
        except TurnoutError as error:
            raise SignInRefused(error.status, error.message, spent) from None
        earlier = await self.sessions.find(request.cookies.get(self.session_cookie))
        if earlier is not None:
            await self.sessions.end(earlier)
        session = cookie(
            self.session_cookie, token, self.root, secure=request.secure, max_age=self.session_ttl
        )
        response = self.renderer.page(
            "signed_in.html", next=next_of(_decode(parts[3])), name=principal.name, caller=None
        )
        response.headers += [session, spent]
        return response

    async def user_of(self, identity: Identity) -> str:
        """The id of the user with this verified email (created only when allow_signup is set)."""
        email = identity.email.strip()
        query = sa.select(users.c.id).where(
            sa.func.lower(users.c.email) == email.lower(), users.c.deleted_at.is_(None)
        )
        async with self.database.engine.connect() as conn:
            found = list((await conn.execute(query)).scalars())
        if len(found) == 1:
            return str(found[0])
        if found:
            raise SignOnFailed(f"More than one turnout user has the email {email}; an admin must resolve it.")
        if not self.settings.allow_signup:
            raise SignOnFailed(
                f"No turnout user has the email {email}. An owner or admin must add you as a user first."
            )
        created = await self.directory.create_user(
            master_principal("single sign-on"), email, identity.name, SIGNUP_ROLE, None
        )
        log.info("console single sign-on created user %s", created["id"])
        return str(created["id"])

    def _failed(self, request: Request) -> None:
        if self.guard is not None:
            self.guard.failed(request.scope)

    def _attempt_cookie(self, request: Request, value: str, max_age: int) -> tuple[bytes, bytes]:
        strict = cookie(ATTEMPT_COOKIE, value, self.start_path, secure=request.secure, max_age=max_age)
        return strict[0], strict[1].replace(b"SameSite=Strict", b"SameSite=Lax")


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def _decode(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except ValueError:
        return ""
