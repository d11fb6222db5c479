"""The one shared HTTP client: keep-alive connection pools per upstream origin.

Adapters prepare an `Endpoint` once (origin, path, static headers as bytes), so a request costs a
concatenation and a write. Connection failures are mapped here, once, to the error tree.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from turnout.config.settings import Timeouts
from turnout.domain.errors import UpstreamConnectionError, UpstreamTimeout
from turnout.providers.http.connection import Connection, Deadlines, StaleConnection, UpstreamResponse

USER_AGENT = b"turnout/0.1"


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """`https://api.x.com/v1/chat?a=b` → (Origin(https, api.x.com, 443), "/v1/chat?a=b")."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Origin(parts.scheme, parts.hostname, port), target


class Endpoint:
    """A prepared upstream URL: the request head up to (not including) per-request headers."""

    __slots__ = ("head_prefix", "origin", "target")

    def __init__(self, method: str, url: str, headers: list[tuple[str, str]]) -> None:
        self.origin, self.target = split_url(url)
        lines = [f"{method} {self.target} HTTP/1.1", f"host: {self.origin.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("header values must not contain line breaks")
        self.head_prefix = ("\r\n".join(lines) + "\r\n").encode("latin-1")


class OriginPool:
    """Idle keep-alive connections to one origin, most recently used first."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        max_idle: int,
        idle_ttl: float,
    ) -> None:
        self.loop = loop
        self.origin = origin
        self.ssl_context = ssl_context
        self.max_idle = max_idle
        self.idle_ttl = idle_ttl
        self.idle: list[Connection] = []

    async def acquire(self, connect_timeout: float) -> Connection:
        idle, now = self.idle, self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.usable and now - conn.idle_since < self.idle_ttl:
                return conn
            conn.close()
        return await self._connect(connect_timeout)

    def release(self, conn: Connection) -> None:
        if len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.close()

    async def _connect(self, connect_timeout: float) -> Connection:
        o = self.origin
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self.loop, self.release),
                    o.host,
                    o.port,
                    ssl=self.ssl_context,
                    server_hostname=o.host if self.ssl_context else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(
                "could not connect to the upstream in time (connect timeout)", phase="connect"
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise UpstreamConnectionError(
                f"the upstream's TLS certificate was not accepted ({error.verify_message})"
            ) from None
        except ssl.SSLError as error:
            raise UpstreamConnectionError(
                f"TLS handshake with the upstream failed ({error.reason})"
            ) from None
        except socket.gaierror:
            raise UpstreamConnectionError("cannot resolve the upstream's host name") from None
        except ConnectionRefusedError:
            raise UpstreamConnectionError("the upstream refused the connection") from None
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise UpstreamConnectionError(f"cannot connect to the upstream ({reason})") from None
        assert isinstance(conn, Connection)
        return conn

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class HttpClient:
    """Shared by every adapter in the process; create it inside the running event loop."""

    def __init__(self, *, max_idle_per_origin: int = 512, idle_ttl: float = 60.0) -> None:
        self.loop = asyncio.get_running_loop()
        self.max_idle = max_idle_per_origin
        self.idle_ttl = idle_ttl
        self._pools: dict[Origin, OriginPool] = {}
        self._ssl: ssl.SSLContext | None = None

    def pool(self, origin: Origin) -> OriginPool:
        pool = self._pools.get(origin)
        if pool is None:
            if origin.tls and self._ssl is None:
                self._ssl = ssl.create_default_context()
            pool = OriginPool(
                self.loop, origin, self._ssl if origin.tls else None, self.max_idle, self.idle_ttl
            )
            self._pools[origin] = pool
        return pool

    async def send(
        self, endpoint: Endpoint, body: bytes, timeouts: Timeouts, extra_headers: bytes = b""
    ) -> UpstreamResponse:
        """Send the request; return once the response head has arrived (or raise)."""
        pool = self.pool(endpoint.origin)
        deadlines = Deadlines(self.loop.time(), timeouts.first_byte, timeouts.idle, timeouts.total)
        head = b"%s%scontent-length: %d\r\n\r\n" % (endpoint.head_prefix, extra_headers, len(body))
        for attempt in range(2):
            conn = await pool.acquire(timeouts.connect)
            response = conn.send(head, body, deadlines)
            try:
                await response.wait_headers()
            except StaleConnection:
                response.release()
                if attempt == 0:
                    continue
                raise UpstreamConnectionError("the upstream closed the connection before answering") from None
            except BaseException:
                response.release()
                raise
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
