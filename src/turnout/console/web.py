"""The console's HTTP: a request read from ASGI (query, cookies, a small form body) and the answers
it sends, every one with the console's security headers (a strict Content-Security-Policy that
allows no inline script or style, no framing, no sniffing, no caching of pages)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any
from urllib.parse import parse_qs

from turnout.domain.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_FORM = 64 * 1024  # a console form's body (the largest is a key's model list)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on form posts
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")


class ClientLeft(Exception):
    """The browser went away before its request was read."""


def _first(values: dict[str, list[str]]) -> dict[str, str]:
    return {name: v[0] for name, v in values.items()}


class Request:
    __slots__ = ("_form", "cookies", "path", "query", "receive", "scope", "secure")

    def __init__(
        self, scope: Scope, receive: Receive, path: str, proxies: Sequence[IPv4Network | IPv6Network] = ()
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.path = path  # below the console's root: "/keys"
        self.secure = self._over_tls(proxies)
        raw_query = bytes(scope.get("query_string") or b"").decode("latin-1")
        self.query = _first(parse_qs(raw_query, keep_blank_values=True))
        self.cookies = _cookies(self.header(b"cookie"))
        self._form: dict[str, str] | None = None

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    def _over_tls(self, proxies: Sequence[IPv4Network | IPv6Network]) -> bool:
        """Did the browser reach turnout over TLS: directly, or through one of the trusted proxies
        (`server.trusted_proxies`) saying so in `X-Forwarded-Proto`? (Cookies are then Secure.)"""
        if self.scope.get("scheme") == "https":
            return True
        client = self.scope.get("client")
        if not proxies or not client or self.header(b"x-forwarded-proto") != "https":
            return False
        try:
            peer = ip_address(client[0])
        except ValueError:
            return False
        return any(peer in network for network in proxies)

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value).decode("latin-1")
        return None

    def text(self, name: str, limit: int = 200) -> str | None:
        """A query or form field, stripped; None when absent or empty."""
        value = (self._form or {}).get(name, self.query.get(name))
        if value is None or not value.strip():
            return None
        value = value.strip()
        if len(value) > limit:
            raise InvalidRequest(f"'{name}' must be at most {limit} characters.", param=name)
        return value

    async def form(self) -> dict[str, str]:
        """The urlencoded body of a form post (at most MAX_FORM bytes)."""
        if self._form is not None:
            return self._form
        kind = (self.header(b"content-type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType("The console takes forms (application/x-www-form-urlencoded).")
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_FORM:
            raise RequestTooLarge(f"A console form is at most {MAX_FORM} bytes.")
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientLeft
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_FORM:
                raise RequestTooLarge(f"A console form is at most {MAX_FORM} bytes.")
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            text = b"".join(parts).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("The form is not UTF-8.") from None
        self._form = _first(parse_qs(text, keep_blank_values=True))
        return self._form


def _cookies(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: bytes = b"text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    cacheable: bool = False  # the console's static files; pages are never stored

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", str(len(self.body)).encode()),
            *SECURITY_HEADERS,
            *self.headers,
        ]
        headers.append((b"cache-control", b"public, max-age=3600") if self.cacheable else NO_STORE)
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def redirect(location: str, *headers: tuple[bytes, bytes]) -> Response:
    """303 See Other: after a form post, the browser GETs `location`."""
    return Response(303, headers=[(b"location", location.encode()), *headers])


def cookie(
    name: str, value: str, path: str, *, secure: bool, max_age: int | None = None, http_only: bool = True
) -> tuple[bytes, bytes]:
    """A Set-Cookie header: SameSite=Strict always, HttpOnly unless the page's script must read it,
    Secure when the console is reached over TLS; `max_age` 0 deletes it."""
    parts = [f"{name}={value}", f"Path={path}", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return (b"set-cookie", "; ".join(parts).encode())
