"""A small OpenID Connect provider for tests: a real HTTP server on 127.0.0.1 (aiohttp, in its own
thread) serving discovery, its JWKS, `/authorize` (it signs in whoever `person` is, at once) and
`/token` (the code exchanged once, the PKCE verifier checked against the S256 challenge, the
client's secret checked), signing ID tokens RS256 with a key generated here. A test can make the
next ID token wrong: `claims` are laid over it, `signing_key` signs it instead."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

KID = "test-key-1"


def new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class IdentityProvider:
    client_id: str = "turnout-console"
    client_secret: str = "provider-secret-" + "x" * 24
    person: dict[str, Any] = field(
        default_factory=lambda: {"sub": "p-1", "email": "ada@example.com", "email_verified": True}
    )
    claims: dict[str, Any] = field(default_factory=dict)  # laid over the next ID tokens
    signing_key: RSAPrivateKey | None = None  # signs instead of the published key
    discovery_overrides: dict[str, Any] = field(default_factory=dict)
    # True: /authorize shows a page whose button signs in (as real providers do, so the way back
    # starts at the provider's page); False: it signs in at once
    login_page: bool = False
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = new_key()
        self.kid = KID
        self._codes: dict[str, dict[str, str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> IdentityProvider:
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/.well-known/openid-configuration", self.discovery)
            app.router.add_get("/jwks", self.jwks)
            app.router.add_get("/authorize", self.authorize)
            app.router.add_post("/authorize", self.authorize)
            app.router.add_post("/token", self.token)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="test-identity-provider", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the identity provider did not start")
        return self

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    # ------------------------------------------------------------------ endpoints

    def rotate(self) -> None:
        """A new signing key under a new `kid`; the JWKS publishes only it from now on."""
        self.key = new_key()
        self.kid = f"test-key-{secrets.token_hex(4)}"

    def id_token(self, nonce: str, **claims: Any) -> str:
        """An ID token as `/token` would sign it now, for `nonce`."""
        now = int(time.time())
        body = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, "nonce": nonce}
        body = {**body, **self.person, **self.claims, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        key = self.signing_key or self.key
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": self.kid})

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token",
                "jwks_uri": self.issuer + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
            | self.discovery_overrides
        )

    async def jwks(self, request: web.Request) -> web.Response:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    async def authorize(self, request: web.Request) -> web.Response:
        query = (
            dict(request.query)
            if request.method == "GET"
            else {k: str(v) for k, v in (await request.post()).items()}
        )
        if request.method == "GET":
            self.authorize_requests.append(query)
        if (
            query.get("client_id") != self.client_id
            or query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
            or "openid" not in query.get("scope", "").split()
        ):
            return web.Response(status=400, text="bad authorization request")
        if self.login_page and request.method == "GET":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in query.items()
            )
            page = (
                '<!doctype html><title>Sign in</title><link rel="icon" href="data:,">'
                f'<form method="post">{fields}<button id="approve">Sign in</button></form>'
            )
            return web.Response(text=page, content_type="text/html")
        code = secrets.token_urlsafe(16)
        self._codes[code] = query
        back = {"code": code, "state": query.get("state", "")}
        raise web.HTTPSeeOther(query["redirect_uri"] + "?" + urlencode(back))

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != "Basic " + expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        asked = self._codes.pop(form.get("code", ""), None)
        if asked is None or form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "invalid_grant"}, status=400)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        ).rstrip(b"=")
        if challenge.decode() != asked["code_challenge"] or form.get("redirect_uri") != asked["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        signed = self.id_token(asked.get("nonce", ""))
        access = "at-" + secrets.token_hex(8)  # unused by turnout: the ID token says who it is
        return web.json_response({"access_token": access, "token_type": "Bearer", "id_token": signed})
