"""The one shared HTTP client: keep-alive connection pools per upstream route.

Adapters prepare an `Endpoint` once (route, path, static headers as bytes), so a request costs a
concatenation and a write. A route is an origin, optionally reached through an HTTP proxy
(CONNECT for https), with the CA certificates to trust. Connection failures are mapped here, once,
to the error tree.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from turnout.config.settings import Timeouts
from turnout.domain.errors import UpstreamConnectionError, UpstreamTimeout
from turnout.providers.http.connection import Connection, Deadlines, UpstreamResponse

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


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy; `authorization` is the Proxy-Authorization value (never shown)."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach an origin: directly or through a proxy, trusting the system's CAs or a file's."""

    origin: Origin
    proxy: Proxy | None = None
    ca_file: str | None = None


class Endpoint:
    """A prepared upstream URL: the request head up to (not including) per-request headers."""

    __slots__ = ("head_prefix", "route", "target")

    def __init__(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        *,
        proxy: Proxy | None = None,
        ca_file: str | None = None,
    ) -> None:
        origin, self.target = split_url(url)
        self.route = Route(origin, proxy, ca_file)
        request_target = self.target
        if proxy is not None and not origin.tls:  # a forward proxy wants the absolute URL
            request_target = f"http://{origin.host_header}{self.target}"
            if proxy.authorization:
                headers = [*headers, ("proxy-authorization", proxy.authorization)]
        lines = [f"{method} {request_target} HTTP/1.1", f"host: {origin.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("header values must not contain line breaks")
        self.head_prefix = ("\r\n".join(lines) + "\r\n").encode("latin-1")


class _TunnelReply(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT (status line and headers, nothing more)."""

    MAX_HEAD = 64 * 1024

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[bytes] = loop.create_future()
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if self.head.done():
            return
        if end >= 0:
            self.head.set_result(bytes(self.buffer[:end]))
        elif len(self.buffer) > self.MAX_HEAD:
            self.head.set_exception(UpstreamConnectionError("the proxy sent an oversized answer to CONNECT"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(
                UpstreamConnectionError("the proxy closed the connection instead of opening a tunnel")
            )


class OriginPool:
    """Idle keep-alive connections along one route, most recently used first."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        route: Route,
        ssl_context: ssl.SSLContext | None,
        max_idle: int,
        idle_ttl: float,
    ) -> None:
        self.loop = loop
        self.route = route
        self.origin = route.origin
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
        proxy = self.route.proxy
        try:
            async with asyncio.timeout(connect_timeout):
                if proxy is None:
                    return await self._open(self.origin.host, self.origin.port, self.ssl_context)
                if not self.origin.tls:
                    return await self._open(proxy.host, proxy.port, None)
                return await self._tunnel(proxy)
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
            where = "proxy" if proxy else "upstream"
            raise UpstreamConnectionError(f"cannot resolve the {where}'s host name") from None
        except ConnectionRefusedError:
            where = "proxy" if proxy else "upstream"
            raise UpstreamConnectionError(f"the {where} refused the connection") from None
        except OSError as error:
            reason = error.strerror or type(error).__name__
            where = "proxy" if proxy else "upstream"
            raise UpstreamConnectionError(f"cannot connect to the {where} ({reason})") from None

    async def _open(self, host: str, port: int, context: ssl.SSLContext | None) -> Connection:
        _, conn = await self.loop.create_connection(
            lambda: Connection(self.loop, self.release),
            host,
            port,
            ssl=context,
            server_hostname=self.origin.host if context else None,
        )
        return conn

    async def _tunnel(self, proxy: Proxy) -> Connection:
        """CONNECT through `proxy` to the origin, then TLS inside the tunnel."""
        transport, reply = await self.loop.create_connection(
            lambda: _TunnelReply(self.loop), proxy.host, proxy.port
        )
        try:
            target = self.origin.host_header if self.origin.port != 443 else f"{self.origin.host_header}:443"
            lines = [f"CONNECT {target} HTTP/1.1", f"host: {target}"]
            if proxy.authorization:
                lines.append(f"proxy-authorization: {proxy.authorization}")
            transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = await reply.head
            status_line = head.split(b"\r\n", 1)[0].split()
            status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
            if status == 407:
                raise UpstreamConnectionError("the proxy refused turnout's proxy credentials (HTTP 407)")
            if status != 200:
                raise UpstreamConnectionError(
                    f"the proxy would not open a tunnel to the upstream (HTTP {status})"
                )
            conn = Connection(self.loop, self.release)
            assert self.ssl_context is not None
            tls = await self.loop.start_tls(
                transport, conn, self.ssl_context, server_hostname=self.origin.host
            )
            if tls is None:
                raise UpstreamConnectionError("TLS through the proxy's tunnel could not be started")
            conn.connection_made(tls)
            return conn
        except BaseException:
            transport.close()
            raise

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
        self._pools: dict[Route, OriginPool] = {}
        self._ssl: dict[str | None, ssl.SSLContext] = {}

    def pool(self, route: Route) -> OriginPool:
        pool = self._pools.get(route)
        if pool is None:
            context = None
            if route.origin.tls:
                context = self._ssl.get(route.ca_file)
                if context is None:  # building one reads the CA store: once per CA file
                    context = self._ssl[route.ca_file] = ssl.create_default_context(cafile=route.ca_file)
            pool = OriginPool(self.loop, route, context, self.max_idle, self.idle_ttl)
            self._pools[route] = pool
        return pool

    async def send(
        self, endpoint: Endpoint, body: bytes, timeouts: Timeouts, extra_headers: bytes = b""
    ) -> UpstreamResponse:
        """Send the request; return once the response head has arrived (or raise). It is sent
        once: a pooled connection that turns out closed raises `UpstreamStaleConnection`, which
        the router counts and retries like any other attempt (the upstream may have read it)."""
        pool = self.pool(endpoint.route)
        deadlines = Deadlines(self.loop.time(), timeouts.first_byte, timeouts.idle, timeouts.total)
        head = b"%s%scontent-length: %d\r\n\r\n" % (endpoint.head_prefix, extra_headers, len(body))
        conn = await pool.acquire(timeouts.connect)
        response = conn.send(head, body, deadlines)
        try:
            await response.wait_headers()
        except BaseException:
            response.release()
            raise
        return response

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
