"""The ledger's journal under disk faults, on a real tmpfs the test mounts and then fills, runs out
of inodes or makes read-only: a journal that cannot be written refuses requests with 503 before
any provider is called; an entry whose write failed after the answer is held, answered, and
lands in the ledger exactly once; a seal that cannot open a new segment keeps the old one; short
writes are finished and failed ones leave no torn entry; /health/ready says which it is."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from aiohttp import web
from click.testing import CliRunner

from turnout.cli.main import main
from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.journal import Journal, read_segment
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database, ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc, settings_for
from support.process import start_serve
from support.tcp_forwarder import TcpForwarder
from support.tmpfs import Tmpfs
from support.upstream import Upstream, fixture_bytes

USER = [{"role": "user", "content": "Hello"}]
BOUND = 20.0  # seconds any wait for the journal's state may take: the watcher looks every second


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Callable[..., Tmpfs]]:
    """Mount a small tmpfs where a gateway's journal will live (`<data>/journal`)."""
    mounted: list[Tmpfs] = []

    def mount(path: Path, **options: Any) -> Tmpfs:
        mounted.append(Tmpfs(path, **options).mount())
        return mounted[-1]

    yield mount
    for fs in mounted:
        fs.unmount()


@pytest.fixture
def gateways() -> Iterator[Callable[[Path, Upstream], Gateway]]:
    started: list[Gateway] = []

    def start(data: Path, upstream: Upstream) -> Gateway:
        started.append(
            Gateway(settings_for(openai_doc(upstream), data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
        )
        return started[-1]

    yield start
    for gateway in started:
        gateway.stop()  # before the tmpfs is unmounted (fixtures end in reverse order)


def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def ready(root_url: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(root_url + "/health/ready", timeout=10)
    return answer.status_code, answer.json()


def wait_for_journal(root_url: str, state: str, **fields: object) -> tuple[int, dict[str, Any]]:
    """Poll /health/ready until the journal is in `state` (with `fields`); the watcher looks every
    second."""
    deadline = time.monotonic() + BOUND
    while True:
        status, body = ready(root_url)
        journal = body.get("journal", {})
        if journal.get("state") == state and all(journal.get(k) == v for k, v in fields.items()):
            return status, body
        assert time.monotonic() < deadline, f"the journal never became {state} {fields}: {body}"
        time.sleep(0.05)


def fill_then_answer(fs: Tmpfs) -> Callable[[web.Request], Any]:
    """An upstream answer during which the journal's disk fills up: the gateway learns of it only
    when it writes the entry of an answer the provider has already given."""

    async def action(request: web.Request) -> web.StreamResponse:
        fs.fill_space()
        return web.Response(body=fixture_bytes("chat_completion.json"), content_type="application/json")

    return action


def refused(error: openai.APIStatusError) -> None:
    assert error.status_code == 503
    assert error.code == "ledger_unavailable"
    assert error.response.headers["retry-after"] == "5"
    assert isinstance(error.body, dict) and error.body["type"] == "service_unavailable"
    assert "not sent to any provider" in error.body["message"]


def test_a_disk_that_fills_during_an_answer_keeps_its_entry_and_refuses_the_next_request_unsent(
    upstream: Upstream,
    tmp_path: Path,
    disk: Callable[..., Tmpfs],
    gateways: Callable[[Path, Upstream], Gateway],
) -> None:
    data = tmp_path / "data"
    fs = disk(data / "journal", size="256k")
    gateway = gateways(data, upstream)
    with client(gateway) as c:
        upstream.then(fill_then_answer(fs))
        answered = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
        assert answered.status_code == 200 and answered.parse().usage is not None  # still answered
        with pytest.raises(openai.InternalServerError) as first:
            c.chat.completions.create(model="gpt-4o", messages=USER)
        refused(first.value)
        with pytest.raises(openai.InternalServerError) as streamed:
            c.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        refused(streamed.value)
        with pytest.raises(openai.InternalServerError) as embedding:
            c.embeddings.create(model="embed", input="Hi")
        refused(embedding.value)
    with (
        anthropic.Anthropic(
            base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20
        ) as claude,
        pytest.raises(anthropic.InternalServerError) as messages,
    ):
        claude.messages.create(model="gpt-4o", max_tokens=20, messages=USER)
    assert messages.value.status_code == 503
    assert messages.value.body == {  # Anthropic's own error shape
        "type": "error",
        "error": {"type": "overloaded_error", "message": first.value.body["message"]},
        "request_id": messages.value.response.headers["x-request-id"],
    }
    assert len(upstream.requests) == 1  # none of the refused requests reached the provider

    status, body = ready(gateway.root_url)
    assert status == 503 and body["status"] == "unavailable"
    assert body["journal"]["state"] == "unwritable" and body["journal"]["fault"] == "ENOSPC"
    shown = CliRunner().invoke(main, ["status", "--url", gateway.root_url, "--key", MASTER_KEY])
    assert shown.exit_code == 1  # not ready
    assert "ledger journal: unwritable (ENOSPC): requests are refused until it can be written" in shown.output
    # the held entry goes into the database directly while the journal cannot take it
    wait_for_journal(gateway.root_url, "unwritable", held=None)

    fs.free_space()
    status, body = wait_for_journal(gateway.root_url, "ok")
    assert status == 200 and body["status"] == "ready" and body["journal"] == {"state": "ok"}
    with client(gateway) as c:
        after = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    gateway.stop()

    rows = ledger_rows(data)
    ids = [answered.headers["x-request-id"], after.headers["x-request-id"]]
    assert sorted(r["request_id"] for r in rows) == sorted(ids)  # each answered request once, no more
    held = next(r for r in rows if r["request_id"] == ids[0])
    assert (held["status"], held["input_tokens"], held["output_tokens"]) == (200, 19, 10)


def test_a_full_disk_is_noticed_before_a_write_fails(
    upstream: Upstream,
    tmp_path: Path,
    disk: Callable[..., Tmpfs],
    gateways: Callable[[Path, Upstream], Gateway],
) -> None:
    data = tmp_path / "data"
    fs = disk(data / "journal", size="256k")
    gateway = gateways(data, upstream)
    fs.fill_space()
    status, body = wait_for_journal(gateway.root_url, "unwritable", fault="ENOSPC")
    assert status == 503 and "held" not in body["journal"]  # nothing was ever at risk
    with client(gateway) as c:
        with pytest.raises(openai.InternalServerError) as first:
            c.chat.completions.create(model="gpt-4o", messages=USER)
        refused(first.value)
        assert upstream.requests == []
        fs.free_space()
        wait_for_journal(gateway.root_url, "ok")
        answered = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    gateway.stop()
    assert [r["request_id"] for r in ledger_rows(data)] == [answered.headers["x-request-id"]]


def test_a_read_only_journal_refuses_requests_until_it_can_be_written(
    upstream: Upstream,
    tmp_path: Path,
    disk: Callable[..., Tmpfs],
    gateways: Callable[[Path, Upstream], Gateway],
) -> None:
    data = tmp_path / "data"
    fs = disk(data / "journal")
    fs.read_only()
    gateway = gateways(data, upstream)  # it starts: readiness says why it will not serve
    status, body = ready(gateway.root_url)
    assert status == 503 and body["journal"] == {"state": "unwritable", "fault": "EROFS"}
    with client(gateway) as c:
        with pytest.raises(openai.InternalServerError) as first:
            c.chat.completions.create(model="gpt-4o", messages=USER)
        refused(first.value)
        assert upstream.requests == []
        fs.writable()
        status, body = wait_for_journal(gateway.root_url, "ok")
        assert status == 200
        answered = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    gateway.stop()
    assert [r["request_id"] for r in ledger_rows(data)] == [answered.headers["x-request-id"]]


def test_no_inode_for_a_new_segment_keeps_the_old_one_and_every_request_answered(
    upstream: Upstream,
    tmp_path: Path,
    disk: Callable[..., Tmpfs],
    gateways: Callable[[Path, Upstream], Gateway],
) -> None:
    data = tmp_path / "data"
    fs = disk(data / "journal", inodes=16)
    gateway = gateways(data, upstream)
    ids = []
    with client(gateway) as c:

        def ask() -> None:
            ids.append(
                c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER).headers[
                    "x-request-id"
                ]
            )

        fs.fill_inodes()  # the journal's open segment has its inode; a new one would need another
        ask()
        # the flusher seals the segment holding that entry each second: it cannot open a new one
        status, body = wait_for_journal(gateway.root_url, "degraded", seal_fault="ENOSPC")
        assert status == 200 and body["status"] == "ready"  # still serving: the old segment takes them
        for _ in range(3):
            ask()
        fs.free_inodes()
        wait_for_journal(gateway.root_url, "ok")
        ask()
    assert len(upstream.requests) == 5
    gateway.stop()
    rows = ledger_rows(data)
    assert sorted(r["request_id"] for r in rows) == sorted(ids)  # every one, once
    assert not [p for p in (data / "journal").iterdir() if p.suffix == ".journal"]


def test_held_entries_reach_the_journal_once_when_the_database_is_away_too(
    upstream: Upstream, tmp_path: Path, disk: Callable[..., Tmpfs]
) -> None:
    """Neither the journal nor the database can take an answered request's entry: it is held, and
    written to the journal once the disk recovers, then moved into the database once it returns."""
    name = asyncio.run(create_postgres_database())
    forwarder = TcpForwarder(PG_HOST, 5432).start()
    data = tmp_path / "data"
    fs = disk(data / "journal", size="256k")
    through = f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{forwarder.port}/{name}"
    doc = {**openai_doc(upstream), "storage": {"database_url": through}}
    gateway = Gateway(settings_for(doc, data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    try:
        with client(gateway) as c:
            forwarder.cut()  # the database goes away
            upstream.then(fill_then_answer(fs))  # and the disk fills during the answer
            held = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
            assert held.status_code == 200
            status, body = ready(gateway.root_url)
            assert status == 503
            assert body["journal"] == {"state": "unwritable", "held": 1, "fault": "ENOSPC"}
            fs.free_space()
            wait_for_journal(gateway.root_url, "ok")  # written to the journal (held no more)
            forwarder.reopen()
            after = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
        gateway.stop()

        async def rows() -> list[dict[str, Any]]:
            database = await Database.open(f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{name}")
            try:
                return await LedgerStore(database).entries()
            finally:
                await database.close()

        ids = sorted(r["request_id"] for r in asyncio.run(rows()))
        assert ids == sorted([held.headers["x-request-id"], after.headers["x-request-id"]])
    finally:
        gateway.stop()
        forwarder.stop()
        asyncio.run(drop_postgres_database(name))


def entry(n: int, **fields: Any) -> LedgerEntry:
    return LedgerEntry(request_id=f"req-{n}", at=time.time(), api="chat", key_id="k1", **fields)


def ids_in(directory: Path) -> list[str]:
    return [e.request_id for path in sorted(directory.glob("*.journal")) for e in read_segment(path)]


def test_a_short_write_is_finished_and_a_failed_one_leaves_no_torn_entry(
    tmp_path: Path, disk: Callable[..., Tmpfs]
) -> None:
    """On a disk with less room than an entry, `write` takes part of it (a real short write) and
    then fails: the part is cut off again, the entry held, and written whole once there is room."""
    directory = tmp_path / "journal"
    fs = disk(directory, size="8k")  # two pages
    journal = Journal(directory)
    journal.append(entry(0))  # the segment's first page
    fs.fill_space()  # the other page
    size = (directory / "ledger-0000000001.journal").stat().st_size
    journal.append(entry(1, alias="a" * 6000))  # longer than what is left of the first page
    assert journal.state == "unwritable" and journal.fault == "ENOSPC" and not journal.accepting
    assert (directory / "ledger-0000000001.journal").stat().st_size == size  # the torn part cut off
    journal.append(entry(2))  # a request already in flight: held behind it, never written first
    assert [e.request_id for e in journal.held] == ["req-1", "req-2"]
    assert ids_in(directory) == ["req-0"]
    assert journal.recover() == 0  # still no room: nothing tried
    fs.free_space()
    assert journal.recover() == 2
    assert journal.state == "ok" and journal.accepting and not journal.held
    journal.append(entry(3))
    assert ids_in(directory) == ["req-0", "req-1", "req-2", "req-3"]  # each whole, each once, in order
    journal.close()


def test_entries_past_the_held_limit_are_kept_and_the_journal_refuses_requests(
    tmp_path: Path, disk: Callable[..., Tmpfs]
) -> None:
    """Past the held limit nothing is dropped: requests are refused instead (here the limit is 2)."""
    directory = tmp_path / "journal"
    fs = disk(directory, size="64k")
    journal = Journal(directory, held_limit=2)
    fs.fill_space()
    for n in range(3):  # requests that were in flight when the disk filled
        journal.append(entry(n))
    assert [e.request_id for e in journal.held] == ["req-0", "req-1", "req-2"]
    assert not journal.accepting
    fs.free_space()
    assert journal.recover() == 3 and journal.accepting
    assert ids_in(directory) == ["req-0", "req-1", "req-2"]
    journal.close()


def test_short_writes_are_written_until_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever `write` returns, the entry goes in whole (here the OS takes 7 bytes a call)."""
    journal = Journal(tmp_path / "journal")
    real_write = os.write
    calls = []

    def seven_bytes(fd: int, data: bytes) -> int:
        if fd != journal._fd:
            return real_write(fd, data)
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", seven_bytes)
    for n in range(3):
        journal.append(entry(n, alias="gpt-4o"))
    monkeypatch.undo()
    assert len(calls) > 3 * 10  # many short writes
    assert ids_in(tmp_path / "journal") == ["req-0", "req-1", "req-2"]
    assert journal.state == "ok"
    journal.close()


def test_kill_9_after_a_held_entry_reached_the_database_loses_nothing(
    upstream: Upstream, tmp_path: Path, disk: Callable[..., Tmpfs]
) -> None:
    """Entries held in memory are put into the database directly within a second, so a process
    killed after that loses none of them (docs/architecture.md: what a kill before it loses)."""
    data = tmp_path / "data"
    fs = disk(data / "journal", size="256k")
    config = tmp_path / "turnout.yaml"
    doc = openai_doc(upstream)
    config.write_text(
        yaml.safe_dump({**doc, "storage": {"data_dir": str(data)}, "spend": {"unknown_prices": "record"}})
    )
    env = {
        "TURNOUT_MASTER_KEY": MASTER_KEY,
        "UPSTREAM_KEY": UPSTREAM_KEY,
        "TURNOUT_LOG_LEVEL": "warning",
        "PATH": "/usr/bin:/bin",
    }
    served = start_serve(config, env)
    root = f"http://127.0.0.1:{served.port}"
    try:
        with openai.OpenAI(base_url=served.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
            before = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
            upstream.then(fill_then_answer(fs))
            held = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
        wait_for_journal(root, "unwritable", held=None)  # in the database now
    finally:
        assert served.stop(signal.SIGKILL) == -signal.SIGKILL
    fs.free_space()
    again = start_serve(config, env)  # moves what the killed process journaled
    assert again.stop(signal.SIGTERM) == 0
    rows = ledger_rows(data)
    assert sorted(r["request_id"] for r in rows) == sorted(
        [before.headers["x-request-id"], held.headers["x-request-id"]]
    )
