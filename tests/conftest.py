"""Shared fixtures: real upstream servers and real gateways on 127.0.0.1, official SDK clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc, settings_for
from support.upstream import Upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(doc: dict[str, Any], environ: dict[str, str] | None = None) -> Gateway:
        gateway = Gateway(settings_for(doc, tmp_path / f"data{len(started)}", environ)).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(openai_doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c
