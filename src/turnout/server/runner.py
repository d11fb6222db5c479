"""Run the gateway: start the services, serve HTTP with uvicorn, drain gracefully, stop the services.

On SIGHUP the configuration is read again and its providers, models, routing and prices applied to
new requests (`turnout.reload`); requests in flight finish on what they began with.

On SIGTERM or SIGINT: readiness turns to 503 at once, and the gateway keeps serving for
`server.drain_delay` (so load balancers notice and stop sending); then no new connections are
accepted, requests in flight — streams included — run to completion (up to
`server.shutdown_grace`), and only then are the services closed. A second SIGINT forces exit.
The signal is not re-raised afterwards, so whatever the services flush on close is never cut short.

When the grace runs out, turnout cuts what is left itself: each stream ends with a
`gateway_shutdown` error event, everything else is cancelled, and the ledger records them as cut
short by the shutdown (503 `gateway_shutdown`, billed for what was produced) — not as clients that
left. uvicorn's own cancellation (`CUT_MARGIN` later) remains for a stream whose client does not
read its last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import socket
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from turnout.app import Services
from turnout.config.settings import Settings
from turnout.domain import tokens
from turnout.reload import Load, Reloader
from turnout.server.asgi import create_app
from turnout.server.hangups import HeldHangups
from turnout.server.metrics_route import MetricsListener
from turnout.server.protocol import edge_protocol

# Objects a young collection may wait for. At CPython's 700, the objects of the requests in flight
# (thousands, for 32 requests of the benchmark's body) were walked by a young collection every 8
# requests and pushed to the older generations, which walked them again: 5-7% of the gateway's CPU
# under load. At 10,000 the requests' own objects are freed by their counts first, and the
# collector runs every several seconds (docs/architecture.md, "Garbage collection").
YOUNG_GENERATION_THRESHOLD = 10_000

log = logging.getLogger("turnout.server")

# Load balancers commonly keep idle upstream connections for 60 s; a gateway that closed them
# sooner would race them and turn requests into 502s.
KEEP_ALIVE_SECONDS = 75
# After the grace, how long (at least) a cut stream has to write its last event before uvicorn
# cancels it.
CUT_MARGIN = 1.0


class MetricsServer(uvicorn.Server):
    """The metrics listener (`metrics.listen`), beside the gateway's server, which owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def metrics_listener(settings: Settings) -> socket.socket | None:
    """The metrics listener's socket, bound before anything starts (an address that cannot be had
    stops the start with a clear error)."""
    address = settings.metrics.listen
    if address is None or not settings.metrics.enabled:
        return None
    host, port = address
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        raise OSError(f"metrics.listen: cannot listen on {host}:{port}: {error.strerror}") from None


class GatewayServer(uvicorn.Server):
    def __init__(
        self,
        services: Services,
        *,
        host: str,
        port: int,
        on_started: Callable[[GatewayServer], None] | None = None,
        reloader: Reloader | None = None,
        metrics_socket: socket.socket | None = None,
    ) -> None:
        settings = services.settings.server
        self.reloader = reloader or Reloader(services, lambda: services.settings)
        self.app = create_app(services, self.reloader)
        self.metrics_socket = metrics_socket
        self.metrics_server = MetricsServer(
            uvicorn.Config(
                MetricsListener(self.app.metrics) if self.app.metrics is not None else self.app,
                loop="none",
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
            )
        )
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            loop="none",
            http=edge_protocol(settings.limits),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace + CUT_MARGIN),
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        super().__init__(config)
        self.services = services
        self._on_started = on_started
        self.stop_requested_at: float | None = None  # loop time
        self._reloads: set[asyncio.Task[None]] = set()

    def serve_metrics(self) -> asyncio.Task[None] | None:
        """Serve /metrics on the metrics listener, until `metrics_server.should_exit`."""
        if self.metrics_socket is None or self.app.metrics is None:
            return None
        return asyncio.get_running_loop().create_task(
            self.metrics_server.serve(sockets=[self.metrics_socket]), name="turnout: metrics listener"
        )

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics_socket is None else int(self.metrics_socket.getsockname()[1])

    @property
    def port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening")

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        tokens.preload()  # before listening: built on first use, it would stall the streams in flight
        await super().startup(sockets)
        # Everything built so far (libraries, settings, services) lives as long as the process.
        # Without this, each full collection walked all of it: 54 ms pauses, a dozen every 8 s at
        # full load; frozen, they take 0.7 ms (docs/architecture.md).
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD)  # (the older generations' stay as they are)
        if self.started and self._on_started is not None:
            self._on_started(self)
        if self.started and HeldHangups.take():
            log.warning("a SIGHUP arrived while the gateway was starting: reloading the configuration now")
            self._reload()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # not its default: ending the process

    def _reload(self) -> None:
        """SIGHUP: read the configuration again; nothing in flight is dropped."""
        task = self.reloader.on_signal()
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, with turnout cutting what is still running when the grace
        runs out (before uvicorn's own cancellation, `CUT_MARGIN` later)."""
        loop = asyncio.get_running_loop()
        cutting: list[asyncio.Task[None]] = []
        grace = self.services.settings.server.shutdown_grace
        timer = loop.call_later(grace, lambda: cutting.append(loop.create_task(self._cut_short())))
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()
            for task in cutting:
                await task

    async def _cut_short(self) -> None:
        streams = await self.services.pipeline.cut_short()
        others = [task for task in self.server_state.tasks if task not in streams]
        if streams or others:
            log.warning(
                "shutdown grace of %.0f s ran out: %d stream(s) cut short, %d other request(s) cancelled",
                self.services.settings.server.shutdown_grace,
                len(streams),
                len(others),
            )
        for task in others:
            task.cancel()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.services.draining:
            super().handle_exit(sig, frame)  # a second signal: uvicorn forces the exit on SIGINT
            return
        self.request_stop()

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does), from inside the event loop."""
        if self.stop_requested_at is None:
            self.stop_requested_at = asyncio.get_running_loop().time()
        self.services.draining = True
        delay = self.services.settings.server.drain_delay
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._stop_serving)
        else:
            self._stop_serving()

    def _stop_serving(self) -> None:
        self.should_exit = True


async def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    on_started: Callable[[GatewayServer], None] | None = None,
    load: Load | None = None,
) -> None:
    """Serve until stopped. `load` reads the configuration again (SIGHUP, `POST /admin/reload`);
    without it a reload finds `settings` unchanged."""
    listener = metrics_listener(settings)
    try:
        services = await Services.start(settings)
    except BaseException:
        if listener is not None:
            listener.close()
        raise
    server: GatewayServer | None = None
    metrics: asyncio.Task[None] | None = None
    try:
        server = GatewayServer(
            services,
            host=settings.server.host if host is None else host,
            port=settings.server.port if port is None else port,
            on_started=on_started,
            reloader=Reloader(services, load or (lambda: settings)),
            metrics_socket=listener,
        )
        metrics = server.serve_metrics()
        await server.serve()
    finally:
        if metrics is not None and server is not None:
            server.metrics_server.should_exit = True
            try:
                await metrics
            except Exception:  # (it failed on its own: the services are closed all the same)
                log.exception("the metrics listener failed")
        elif listener is not None:
            listener.close()
        # the services' last writes get what is left of the grace the shutdown began with
        began = None if server is None else server.stop_requested_at
        loop = asyncio.get_running_loop()
        grace = settings.server.drain_delay + settings.server.shutdown_grace
        await services.aclose(deadline=(began or loop.time()) + grace)
