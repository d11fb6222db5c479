"""OAuth2 access tokens for a Google service account, as Vertex AI wants them per request.

google-auth makes them (a JWT signed with the account's key, exchanged at its `token_uri`). They
are cached until shortly before they expire and refreshed one at a time, never on the event loop:
google-auth's refresh is synchronous, so it runs in a worker thread, and its one HTTP call comes
back to the loop to go through the shared client (with the provider's proxy and CA). google-auth is
imported on the first refresh, so a gateway without Vertex providers never loads it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from turnout.config.settings import Timeouts
from turnout.domain.errors import UpstreamAuthError, UpstreamTimeout
from turnout.observability.redaction import redact
from turnout.providers.link import ProviderLink

log = logging.getLogger("turnout.upstream")

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN = 300.0  # seconds before expiry when a token is replaced
DEFAULT_LIFETIME = 3600.0  # Google's tokens live an hour; assumed when the answer has no expires_in
TOKEN_TIMEOUTS = Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=15.0)
MAX_TOKEN_RESPONSE = 1024 * 1024

_TOKEN = re.compile(r"^[\x21-\x7e]{1,8192}$")  # printable, no spaces: safe in a header
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")  # OAuth's `error` codes (invalid_grant, ...)


class ServiceAccountTokens:
    """The `authorization: Bearer ...` header line for a service account's current token."""

    def __init__(self, link: ProviderLink, credentials_file: Path, *, refresh_margin: float = REFRESH_MARGIN):
        self._link = link
        self._file = credentials_file
        self._margin = refresh_margin
        self._credentials: Any = None  # google.oauth2.service_account.Credentials, made on first use
        self._header = b""
        self._fresh_until = 0.0  # event-loop time
        self._refreshing: asyncio.Task[bytes] | None = None

    async def header(self) -> bytes:
        loop = asyncio.get_running_loop()
        if self._header and loop.time() < self._fresh_until:
            return self._header
        task = self._refreshing
        if task is None:  # the first caller refreshes; everyone else waits for it
            task = self._refreshing = loop.create_task(self._refresh(loop))
            task.add_done_callback(_retrieve)
        # A caller that gives up (its client left) must not cancel the others' refresh.
        return await asyncio.shield(task)

    def invalidate(self) -> None:
        """Forget the token (Vertex refused it): the next request gets a new one."""
        self._fresh_until = 0.0

    async def aclose(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()

    async def _refresh(self, loop: asyncio.AbstractEventLoop) -> bytes:
        try:
            token, lifetime = await asyncio.to_thread(self._refresh_blocking, loop)
        finally:
            self._refreshing = None
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise UpstreamAuthError(
                f"The provider '{self._link.provider}' got a malformed access token from Google's token "
                "endpoint.",
                deployment=self._link.provider,
            )
        self._header = f"authorization: Bearer {token}\r\n".encode("ascii")
        # The request that asked for it uses it whatever its lifetime; later ones once it is close
        # to expiring get a new one.
        self._fresh_until = loop.time() + lifetime - self._margin
        return self._header

    def _refresh_blocking(self, loop: asyncio.AbstractEventLoop) -> tuple[object, float]:
        """In a worker thread: (the new token, seconds it stays valid)."""
        from google.auth import exceptions
        from google.oauth2 import service_account

        provider = self._link.provider
        try:
            if self._credentials is None:
                self._credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(self._file), scopes=[SCOPE]
                )
            self._credentials.refresh(_Transport(self._link, loop))
        except exceptions.RefreshError as error:
            code = _oauth_error_code(error)
            log.error(
                "provider %s: Google's token endpoint refused the service account: %s",
                provider,
                redact(str(error.args[0]) if error.args else type(error).__name__),
            )
            raise UpstreamAuthError(
                f"The provider '{provider}' could not get a Google access token: the token endpoint "
                f"refused its service account{f' ({code})' if code else ''}; an operator must fix "
                "this provider's credentials.",
                deployment=provider,
            ) from None
        except (OSError, ValueError, exceptions.GoogleAuthError) as error:
            log.error(
                "provider %s: cannot use the service-account key file: %s", provider, type(error).__name__
            )
            raise UpstreamAuthError(
                f"The provider '{provider}' could not use its service-account key file "
                f"({type(error).__name__}); an operator must fix this provider's credentials.",
                deployment=provider,
            ) from None
        expiry = self._credentials.expiry
        if not isinstance(expiry, datetime.datetime):
            return self._credentials.token, DEFAULT_LIFETIME
        if expiry.tzinfo is None:  # google-auth keeps naive UTC times
            expiry = expiry.replace(tzinfo=datetime.UTC)
        return self._credentials.token, (expiry - datetime.datetime.now(datetime.UTC)).total_seconds()


def _oauth_error_code(error: Exception) -> str | None:
    """The token endpoint's `error` code (e.g. invalid_grant), and nothing else of its answer."""
    details = error.args[1] if len(error.args) > 1 else None
    code = details.get("error") if isinstance(details, Mapping) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a refresh's failure as seen, should every caller have gone before it ended."""
    if not task.cancelled():
        task.exception()


class _Response:
    """google-auth's `transport.Response` interface."""

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class _Transport:
    """google-auth's `transport.Request` interface, called in a worker thread: the request is made
    on the event loop by the shared client, and the thread waits for its answer."""

    def __init__(self, link: ProviderLink, loop: asyncio.AbstractEventLoop) -> None:
        self._link = link
        self._loop = loop

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: object,
    ) -> _Response:
        fetch = self._fetch(url, method, body or b"", headers or {})
        future = asyncio.run_coroutine_threadsafe(fetch, self._loop)
        try:
            return future.result(TOKEN_TIMEOUTS.total + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise UpstreamTimeout(
                "Google's token endpoint did not answer in time",
                phase="total",
                deployment=self._link.provider,
            ) from None

    async def _fetch(self, url: str, method: str, body: bytes, headers: Mapping[str, str]) -> _Response:
        lines = [("user-agent", "turnout/0.1"), *((k.lower(), v) for k, v in headers.items())]
        try:
            endpoint = self._link.endpoint(method, url, lines)
        except ValueError:
            raise UpstreamAuthError(
                f"The provider '{self._link.provider}' has a service-account key whose token_uri is not "
                "an http(s) URL.",
                deployment=self._link.provider,
            ) from None
        response = await self._link.client.send(endpoint, body, TOKEN_TIMEOUTS)
        data = await response.read(MAX_TOKEN_RESPONSE)
        return _Response(response.status, {}, data)
