"""Run a real turnout gateway for a test: the same `serve()` the CLI runs, in its own thread and
event loop, listening on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from turnout.app import Services
from turnout.config.settings import Settings
from turnout.providers.config_loader import build_settings
from turnout.server.runner import GatewayServer, serve

from support.upstream import Upstream

MASTER_KEY = "sk-test-master-thLBWG1X35YfISATkC5X_zPeshfvwpD8mtqVtC4OY_Y"
UPSTREAM_KEY = "sk-upstream-secret-abcdef0123456789"
T = TypeVar("T")


def settings_for(doc: dict[str, Any], data_dir: Path, environ: dict[str, str] | None = None) -> Settings:
    env = {"TURNOUT_MASTER_KEY": MASTER_KEY, **(environ or {})}
    doc = {**doc, "storage": {"data_dir": str(data_dir), **doc.get("storage", {})}}
    # test upstreams serve made-up models: their spend is recorded as unknown unless a test prices
    # them (or asks for the default, which refuses unpriced models at load)
    doc.setdefault("spend", {"unknown_prices": "record"})
    return build_settings(doc, env, source="test")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: GatewayServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def services(self) -> Services:
        assert self.server is not None
        return self.server.services

    @property
    def root_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def start(self) -> Gateway:
        ready = threading.Event()

        def started(server: GatewayServer) -> None:
            self.server = server
            self.loop = asyncio.get_running_loop()
            ready.set()

        def run() -> None:
            try:
                uvloop.run(serve(self.settings, host="127.0.0.1", port=0, on_started=started))
            except BaseException as error:
                self._failure = error
                ready.set()

        self._thread = threading.Thread(target=run, name="test-gateway", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise TimeoutError("the gateway did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the gateway's event loop (to read or poke its state safely)."""
        assert self.loop is not None
        result: list[T] = []
        done = threading.Event()

        def run() -> None:
            result.append(fn())
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(10)
        return result[0]

    def finish_now(self) -> None:
        """End a graceful shutdown already under way without waiting out its drain delay."""
        assert self.server is not None and self._thread is not None
        server = self.server
        self.call(lambda: setattr(server, "should_exit", True))
        self._thread.join(30)
        assert not self._thread.is_alive(), "the gateway did not stop"
        self.server = None

    def stop(self) -> None:
        if self.server is not None and self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self.server.request_stop)
            self._thread.join(30)
            assert not self._thread.is_alive(), "the gateway did not stop"
            self.server = None
        if self._failure is not None:
            raise self._failure


def openai_doc(upstream: Upstream, **provider: Any) -> dict[str, Any]:
    """A config with one OpenAI-compatible provider at `upstream` and a few aliases on it. One
    attempt per request and a breaker that does not open, so that tests see each scripted upstream
    answer as it is (retries, breakers and failover have their own tests)."""
    return {
        "routing": {
            "retries": {"attempts": 1},
            "breaker": {"consecutive_failures": 10000, "min_requests": 10000},
        },
        "providers": {
            "up": {
                "type": "openai_compatible",
                "base_url": upstream.base_url,
                "api_key": "env:UPSTREAM_KEY",
                **provider,
            }
        },
        "models": {
            "gpt-4o": {"provider": "up", "model": "gpt-4o-2024-08-06"},
            "embed": {"provider": "up", "model": "text-embedding-3-small"},
            "up/*": {"provider": "up", "model": "*"},
        },
    }
