"""Reloading the configuration of a running `turnout serve` (SIGHUP, POST /admin/reload): requests
in flight finish on the configuration they began with, new ones get the new one, and a file that
does not load changes nothing and says why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.process import TURNOUT, Served, start_serve
from support.tcp_forwarder import TcpForwarder

MASTER = "sk-master-for-reload-Ux2v9QmW4rT7yZ1aB3cD5eF7gH9iJ1kL3mN5oP7qR9s"
PROMPT = "tell me a long story"


def document(tmp_path: Path, models: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {
        "server": {"shutdown_grace": "20s"},
        "storage": {"data_dir": str(tmp_path / "data")},
        "spend": {"unknown_prices": "record"},
        "providers": {"local": {"type": "fake", "fake": {"chunks": 30, "chunk_gap": "50ms"}}},
        "models": models,
        **sections,
    }


BEFORE = {"story": {"provider": "local", "model": "before-reload"}}
AFTER = {
    "story": {"provider": "local", "model": "after-reload"},
    "fresh": {"provider": "local", "model": "fresh-model"},
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "turnout.yaml"
    path.write_text(yaml.safe_dump(document(tmp_path, BEFORE)))
    return path


@pytest.fixture
def served(config: Path) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    process = start_serve(config, {**clean, "TURNOUT_LOG_LEVEL": "warning", "TURNOUT_MASTER_KEY": MASTER})
    yield process
    process.stop(signal.SIGKILL)


def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base_url, api_key=MASTER, max_retries=0, timeout=30)


def answered_by(served: Served, model: str) -> str:
    """The upstream model a request for `model` reached (the fake upstream names it)."""
    with client(served) as c:
        return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}]).model


def until_served(served: Served, model: str) -> bool:
    """Whether `model` is served within ten seconds (False at once if the process exits)."""
    url = f"http://127.0.0.1:{served.port}/v1/models/{model}"
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {MASTER}"}) as http:
        for _ in range(200):
            if http.get(url).status_code == 200:
                return True
            with contextlib.suppress(subprocess.TimeoutExpired):
                served.proc.wait(0.05)  # a pause that ends early if the gateway exits
                return False
    return False


def reload(served: Served) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{served.port}/admin/reload",
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=30,
    )


async def streams_across_a_reload(served: Served, config: Path, changed: str) -> tuple[list[list[Any]], bool]:
    """Ten streams begun before SIGHUP (with a changed configuration), read to their end once the
    new configuration serves; and whether it did while they were in flight."""
    async with openai.AsyncOpenAI(base_url=served.base_url, api_key=MASTER, max_retries=0, timeout=60) as c:
        streams = [
            aiter(
                await c.chat.completions.create(
                    model="story", messages=[{"role": "user", "content": PROMPT}], stream=True
                )
            )
            for _ in range(10)
        ]
        firsts = [await anext(s) for s in streams]  # all ten in flight
        await asyncio.to_thread(config.write_text, changed)
        served.proc.send_signal(signal.SIGHUP)
        reloaded = await asyncio.to_thread(until_served, served, "fresh")

        async def rest(stream: Any) -> list[Any]:
            return [chunk async for chunk in stream]

        tails = await asyncio.gather(*(rest(s) for s in streams))
    return [[first, *tail] for first, tail in zip(firsts, tails, strict=True)], reloaded


def test_sighup_lets_ten_streams_in_flight_finish_and_new_requests_see_the_new_configuration(
    served: Served, config: Path, tmp_path: Path
) -> None:
    assert answered_by(served, "story") == "before-reload"
    changed = yaml.safe_dump(document(tmp_path, AFTER))
    finished, reloaded = asyncio.run(streams_across_a_reload(served, config, changed))
    assert reloaded  # the new alias was served while the ten streams were still open
    for chunks in finished:  # every stream whole, and on the configuration it began with
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == f"You said: {PROMPT}"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert {c.model for c in chunks} == {"before-reload"}
    assert answered_by(served, "fresh") == "fresh-model"
    assert answered_by(served, "story") == "after-reload"
    assert served.stop() == 0


def test_an_invalid_file_keeps_the_running_configuration_and_says_why(
    served: Served, config: Path, tmp_path: Path
) -> None:
    broken = document(
        tmp_path, {"story": {"provider": "nowhere", "model": "x"}}, routing={"hedge_after": "soon"}
    )
    config.write_text(yaml.safe_dump(broken))
    served.proc.send_signal(signal.SIGHUP)  # logged and refused: the gateway keeps serving
    refused = reload(served)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_configuration" and "running configuration is kept" in error["message"]
    assert any(p.startswith("models.story") and "nowhere" in p for p in error["problems"]), error
    assert any(p.startswith("routing.hedge_after") for p in error["problems"]), error
    assert answered_by(served, "story") == "before-reload"
    with pytest.raises(openai.NotFoundError):
        answered_by(served, "fresh")

    fixed = document(
        tmp_path,
        AFTER,
        server={"shutdown_grace": "25s"},
        metrics={"team_label": True},
        console={"session_ttl": "4h"},
    )
    config.write_text(yaml.safe_dump(fixed))
    applied = reload(served)
    assert applied.status_code == 200, applied.text
    assert applied.json()["changed"] == ["models"]
    # the listener's settings, the metrics' labels and the console (its sign-in) wait for a restart
    assert applied.json()["restart_needed"] == ["server", "metrics", "console"]
    assert answered_by(served, "fresh") == "fresh-model"  # at once, on the next request
    assert answered_by(served, "story") == "after-reload"
    assert served.proc.poll() is None
    assert served.stop() == 0


@pytest.mark.postgres
def test_a_sighup_while_starting_does_not_end_the_gateway_and_is_acted_on_once_it_listens(
    tmp_path: Path,
) -> None:
    """The start is held on a database that does not answer yet (a black hole); a SIGHUP then, as
    a config-management run might send, is one reload once the gateway listens (not its end)."""
    name = asyncio.run(create_postgres_database())
    forwarder = TcpForwarder(PG_HOST, 5432).start()
    forwarder.stall()
    url = f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{forwarder.port}/{name}"
    storage = {"data_dir": str(tmp_path / "data"), "database_url": url, "database_timeout": "60s"}
    config = tmp_path / "turnout.yaml"
    config.write_text(yaml.safe_dump({**document(tmp_path, BEFORE), "storage": storage}))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    env = {**clean, "TURNOUT_LOG_LEVEL": "warning", "TURNOUT_MASTER_KEY": MASTER}
    proc = subprocess.Popen(
        [TURNOUT, "serve", "--config", str(config), "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()], daemon=True)
    reader.start()

    def wait_for(pattern: str) -> re.Match[str]:
        while True:
            line = lines.get(timeout=60)
            if found := re.search(pattern, line):
                return found

    try:
        forwarder.wait_for_connection(timeout=60)  # turnout serve is past its start: at the database
        proc.send_signal(signal.SIGHUP)
        config.write_text(yaml.safe_dump({**document(tmp_path, AFTER), "storage": storage}))
        forwarder.resume()
        port = int(wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        wait_for("a SIGHUP arrived while the gateway was starting")
        wait_for(r"reload: .* read; models applied")
        served = Served(proc, port, "", threading.Thread())
        assert answered_by(served, "fresh") == "fresh-model"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        reader.join(10)
        proc.stderr.close()
        forwarder.stop()
        asyncio.run(drop_postgres_database(name))
    assert code == 0
