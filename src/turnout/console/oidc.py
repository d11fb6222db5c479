"""An OpenID Connect relying party for the console's single sign-on: the authorization code flow
with PKCE (S256), `state` and `nonce`; the provider's endpoints read from its discovery document
(`<issuer>/.well-known/openid-configuration`) and its signing keys from its JWKS; the ID token's
signature, `iss`, `aud` (and `azp`), `exp`, `iat` and `nonce` checked with PyJWT, its times
allowed `clock_skew` seconds of drift. Off the proxy's hot path: only signing in comes here.

Every answer read from the provider is bounded (MAX_DOCUMENT bytes, DEADLINES); nothing
the provider sends reaches a page or the log but the error's kind (never a code or a token).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import orjson

from turnout.config.settings import OidcSettings, Timeouts
from turnout.domain.errors import TurnoutError
from turnout.providers.http.client import Endpoint, HttpClient

MAX_DOCUMENT = 256 * 1024  # discovery, JWKS, the token answer
DEADLINES = Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=15.0)
DISCOVERY_TTL = 3600.0  # discovery and keys are read again after this long
OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")
KEYS_REFRESH = 60.0  # an unknown `kid` makes the keys be read again at most this often
# asymmetric algorithms only: `none` and the HMAC family (keyed with the client secret) never
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class SignOnFailed(Exception):
    """Single sign-on did not establish who this is; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the browser carries between leaving for the provider and coming back."""

    state: str
    nonce: str
    verifier: str  # PKCE code_verifier (RFC 7636): 43 characters of base64url

    @classmethod
    def new(cls) -> Attempt:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the provider says signed in: its subject and their verified email."""

    subject: str
    email: str
    name: str | None


@dataclass(frozen=True, slots=True)
class Discovery:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    basic_auth: bool  # client_secret_basic (else client_secret_post)


class OidcClient:
    def __init__(
        self,
        settings: OidcSettings,
        http: HttpClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock
        self._discovery: tuple[float, Discovery] | None = None
        self._keys: tuple[float, jwt.PyJWKSet] | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ the provider's documents

    async def _get_json(
        self, url: str, what: str, *, data: dict[str, str] | None = None, auth: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """GET `url` (POST the form `data`, with HTTP Basic `auth`) through the process's shared
        HTTP client, and read its JSON object."""
        headers = [("accept", "application/json"), ("user-agent", "turnout/0.1"), ("connection", "close")]
        body = b""
        if data is not None:
            body = urlencode(data).encode("ascii")
            headers.append(("content-type", "application/x-www-form-urlencoded"))
        if auth is not None:  # RFC 6749 2.3.1: each part form-encoded first
            pair = f"{quote(auth[0], safe='')}:{quote(auth[1], safe='')}".encode()
            headers.append(("authorization", "Basic " + base64.b64encode(pair).decode("ascii")))
        try:
            endpoint = Endpoint("POST" if data is not None else "GET", url, headers)
            response = await self.http.send(endpoint, body, DEADLINES)
            answer = await response.read(MAX_DOCUMENT)
        except ValueError:
            raise SignOnFailed(f"The sign-in provider's {what} URL is not usable.") from None
        except TurnoutError:
            raise SignOnFailed(f"The sign-in provider did not answer ({what}); try again shortly.") from None
        try:
            value = orjson.loads(answer)
        except orjson.JSONDecodeError:
            value = None
        if response.status != 200:
            # RFC 6749 5.2's error code (invalid_client: the secret is wrong), never its free text
            code = value.get("error") if isinstance(value, dict) else None
            named = f", {code}" if isinstance(code, str) and OAUTH_ERROR.fullmatch(code) else ""
            raise SignOnFailed(f"The sign-in provider refused ({what}: HTTP {response.status}{named}).")
        if value is None:
            raise SignOnFailed(f"The sign-in provider's {what} is not JSON.")
        if not isinstance(value, dict):
            raise SignOnFailed(f"The sign-in provider's {what} is not a JSON object.")
        return value

    async def discovery(self) -> Discovery:
        cached = self._discovery
        if cached is not None and self.clock() - cached[0] < DISCOVERY_TTL:
            return cached[1]
        issuer = self.settings.issuer
        found = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery")
        if found.get("issuer") != issuer:
            raise SignOnFailed("The sign-in provider's discovery names another issuer.")
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            url = found.get(name)
            if (
                not isinstance(url, str)
                or not url.startswith(("https://", "http://"))
                or (url.startswith("http://") and not issuer.startswith("http://"))
            ):
                raise SignOnFailed(f"The sign-in provider's discovery has no usable {name}.")
            endpoints[name] = url
        methods = found.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise SignOnFailed("The sign-in provider does not support PKCE with S256.")
        offered = found.get("id_token_signing_alg_values_supported")
        algorithms = tuple(a for a in SIGNING_ALGORITHMS if not isinstance(offered, list) or a in offered)
        if not algorithms:
            raise SignOnFailed("The sign-in provider signs ID tokens with no algorithm turnout accepts.")
        auth_methods = found.get("token_endpoint_auth_methods_supported")
        basic = not isinstance(auth_methods, list) or "client_secret_basic" in auth_methods
        discovery = Discovery(**endpoints, algorithms=algorithms, basic_auth=basic)
        self._discovery = (self.clock(), discovery)
        return discovery

    async def _signing_key(self, discovery: Discovery, kid: str | None) -> jwt.PyJWK:
        async with self._lock:
            cached = self._keys
            stale = cached is None or self.clock() - cached[0] >= DISCOVERY_TTL
            if not stale and cached is not None and _find(cached[1], kid) is None:
                stale = self.clock() - cached[0] >= KEYS_REFRESH  # a rotated key: read again
            if stale:
                document = await self._get_json(discovery.jwks_uri, "keys")
                try:
                    keys = jwt.PyJWKSet.from_dict(document)
                except jwt.PyJWTError:
                    raise SignOnFailed("The sign-in provider's keys are not a usable JWKS.") from None
                self._keys = cached = (self.clock(), keys)
            assert cached is not None
            key = _find(cached[1], kid)
        if key is None:
            raise SignOnFailed("The ID token is signed with a key the sign-in provider does not publish.")
        return key

    # ------------------------------------------------------------------ the flow

    async def authorization_url(self, attempt: Attempt, redirect_uri: str) -> str:
        discovery = await self.discovery()
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": attempt.state,
            "nonce": attempt.nonce,
            "code_challenge": attempt.challenge,
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in discovery.authorization_endpoint else "?"
        return discovery.authorization_endpoint + separator + urlencode(query)

    async def identify(self, attempt: Attempt, code: str, redirect_uri: str) -> Identity:
        """Exchange the code (with the PKCE verifier) and verify the ID token it brings."""
        discovery = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": attempt.verifier,
            "client_id": self.settings.client_id,
        }
        secret = self.settings.client_secret
        auth = None
        if secret is not None and discovery.basic_auth:
            auth = (self.settings.client_id, secret.reveal())
        elif secret is not None:
            form["client_secret"] = secret.reveal()
        answer = await self._get_json(discovery.token_endpoint, "token", data=form, auth=auth)
        token = answer.get("id_token")
        if not isinstance(token, str) or len(token) > MAX_DOCUMENT:
            raise SignOnFailed("The sign-in provider sent no ID token.")
        return await self.verify(token, attempt.nonce)

    async def verify(self, token: str, nonce: str) -> Identity:
        discovery = await self.discovery()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise SignOnFailed("The ID token is malformed.") from None
        if header.get("alg") not in discovery.algorithms:
            raise SignOnFailed("The ID token is signed with an algorithm turnout does not accept.")
        kid = header.get("kid")
        key = await self._signing_key(discovery, kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(discovery.algorithms),
                audience=self.settings.client_id,
                issuer=self.settings.issuer,
                leeway=self.settings.clock_skew,
                options={"require": ["iss", "aud", "exp", "iat", "sub", "nonce"]},
            )
        except jwt.ExpiredSignatureError:
            raise SignOnFailed("The ID token has expired; sign in again.") from None
        except jwt.InvalidAudienceError:
            raise SignOnFailed("The ID token was issued to another client.") from None
        except jwt.InvalidIssuerError:
            raise SignOnFailed("The ID token was issued by another provider.") from None
        except jwt.InvalidSignatureError:
            raise SignOnFailed("The ID token's signature is not the sign-in provider's.") from None
        except jwt.PyJWTError:
            raise SignOnFailed("The ID token is not valid.") from None
        if claims.get("iat", 0) > self.clock() + self.settings.clock_skew:
            raise SignOnFailed("The ID token was issued in the future; check the clocks.")
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
            claims["nonce"].encode(), nonce.encode()
        ):
            raise SignOnFailed("The ID token is not the answer to this sign-in (its nonce differs).")
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.settings.client_id:
            raise SignOnFailed("The ID token was issued to another client.")
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email or len(email) > 320:
            raise SignOnFailed("The sign-in provider did not say who this is (no email in the ID token).")
        if claims.get("email_verified") is not True:
            raise SignOnFailed(
                f"The sign-in provider has not verified the email {email}; "
                "turnout signs in verified emails only."
            )
        name = claims.get("name")
        return Identity(
            subject=str(claims["sub"]),
            email=email,
            name=name[:200] if isinstance(name, str) and name.strip() else None,
        )


def _find(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
    usable = [k for k in keys.keys if getattr(k, "public_key_use", None) in (None, "sig")]
    if kid is None:
        return usable[0] if len(usable) == 1 else None
    return next((k for k in usable if k.key_id == kid), None)
