"""Where the request log lives, by measurement: a second's entries at 200 logged requests a second
(the realistic 10-message request with two tools and a 1 KiB answer) redacted and encoded, then
written as one batch to SQLite, to PostgreSQL (with --pg), or appended to a JSON Lines file under
the data dir; and, with `--rows` entries stored, what browsing and searching cost each way (a page
of one key's newest entries; a text search; the same search as a scan of the file).

    .venv/bin/python bench/choices/request_log_store.py [--rows 50000] [--pg postgresql+asyncpg://postgres@127.0.0.1/DB]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.domain.principal import Principal
from turnout.observability.redaction import redact
from turnout.request_logs.capture import Captured
from turnout.request_logs.scrub import Scrubber
from turnout.request_logs.store import Filters, RequestLogStore
from turnout.request_logs.writer import RequestLogWriter
from turnout.storage.database import Database
from turnout.storage.paging import Paging
from turnout.storage.tables import request_logs

BODY = json.loads((Path(__file__).resolve().parents[1] / "bodies" / "chat_10msg_2tools.json").read_bytes())
ANSWER = "The turnout moves the train onto another track without stopping it. " * 15  # ~1 KiB
BATCH = 200
BATCHES = 20
MASTER = Principal(key_id="master", name="master", role="owner", kind="master")


def entry(n: int, at: float) -> Captured:
    body = dict(BODY)
    body["messages"] = [*BODY["messages"], {"role": "user", "content": f"question {n} about word{n % 997}"}]
    return Captured(
        request_id=f"r{n:09d}",
        at=at,
        api="chat",
        key_id=f"k{n % 20}",
        team_id=f"t{n % 5}",
        user_id=None,
        alias="gpt-4o",
        model="gpt-4o-2024-08-06",
        deployment="up/gpt-4o-2024-08-06",
        stream=False,
        status=200,
        reason=None,
        latency_ms=100,
        request=body,
        answer=None,
        usage=None,
    )


def rows(writer: RequestLogWriter, start: int, count: int) -> list[dict[str, Any]]:
    now = time.time()
    built = writer._rows([entry(n, now - (start + count - n) / 1000) for n in range(start, start + count)])
    for row in built:
        row["response"] = orjson.dumps({"choices": [{"message": {"content": ANSWER}}]}).decode()
    return built


def redaction_cost() -> None:
    """Redacting and encoding one entry's request: every string through the credential patterns,
    and (turnout's way) only the strings a cheap look says could hold a credential."""
    every = Scrubber((), 65536)
    every.text = lambda value: redact(value, 1 << 62)  # type: ignore[method-assign]
    every.clean = lambda value: False  # type: ignore[method-assign]
    for label, scrubber in (
        ("every string through the patterns", every),
        ("prefiltered", Scrubber((), 65536)),
    ):
        runs = timeit.repeat(lambda s=scrubber: s.document(BODY), number=500, repeat=5)  # type: ignore[misc]
        print(f"redact + encode the request, {label}: {min(runs) / 500 * 1e6:.0f} µs")


async def measure(url: str, label: str, stored: int) -> None:
    database = await Database.open(url, deadline=60)
    writer = RequestLogWriter(database, Scrubber((), 65536), 10_000)
    started = time.perf_counter()
    rows(writer, 0, BATCH)
    print(f"{label}: redact + encode, per entry: {(time.perf_counter() - started) / BATCH * 1e6:.0f} µs")
    times = []
    for b in range(BATCHES):
        batch = rows(writer, (b + 1) * BATCH, BATCH)
        t = time.perf_counter()
        async with database.engine.begin() as conn:
            await conn.execute(database.insert_new(request_logs, "request_id"), batch)
        times.append(time.perf_counter() - t)
    print(f"{label}: insert a batch of {BATCH}: median {statistics.median(times) * 1000:.1f} ms")
    n = (BATCHES + 1) * BATCH
    while n < stored:
        batch = rows(writer, n, 2000)
        async with database.engine.begin() as conn:
            await conn.execute(database.insert_new(request_logs, "request_id"), batch)
        n += 2000
    store = RequestLogStore(database)
    for what, filters in (
        ("page of one key's newest", Filters(key_id="k3")),
        ("text search, common word", Filters(text="word17")),
        ("text search, absent word", Filters(text="nowhere-to-be-found")),
    ):
        t = time.perf_counter()
        await store.page(MASTER, filters, Paging(100))
        print(f"{label}: {what} over {n} entries: {(time.perf_counter() - t) * 1000:.1f} ms")
    async with database.engine.begin() as conn:
        await conn.execute(sa.delete(request_logs))
    await database.close()


def measure_file(directory: Path, stored: int) -> None:
    writer = RequestLogWriter(None, Scrubber((), 65536), 10_000)  # type: ignore[arg-type]
    path = directory / "requests.jsonl"
    times = []
    with path.open("ab") as f:
        for b in range(BATCHES):
            batch = rows(writer, b * BATCH, BATCH)
            t = time.perf_counter()
            f.write(b"".join(orjson.dumps(r, default=str) + b"\n" for r in batch))
            f.flush()
            times.append(time.perf_counter() - t)
        n = BATCHES * BATCH
        while n < stored:
            f.write(b"".join(orjson.dumps(r, default=str) + b"\n" for r in rows(writer, n, 2000)))
            n += 2000
    print(f"file: append a batch of {BATCH}: median {statistics.median(times) * 1000:.1f} ms")
    for what, needle in (("text search, common word", b"word17"), ("text search, absent word", b"nowhere")):
        t = time.perf_counter()
        found = 0
        with path.open("rb") as f:
            for line in f:
                if needle in line.lower():
                    found += 1
                    if found >= 100:
                        break
        print(f"file: {what} over {n} entries (a scan): {(time.perf_counter() - t) * 1000:.1f} ms")
    t = time.perf_counter()
    newest = [line for line in path.open("rb") if b'"key_id":"k3"' in line][-100:]
    print(
        f"file: page of one key's newest over {n} entries (a scan): {(time.perf_counter() - t) * 1000:.1f} ms"
    )
    del newest


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--pg")
    args = parser.parse_args()
    redaction_cost()
    with tempfile.TemporaryDirectory() as tmp:
        await measure(f"sqlite+aiosqlite:///{tmp}/bench.db", "sqlite", args.rows)
        if args.pg:
            await measure(args.pg, "postgresql", args.rows)
        measure_file(Path(tmp), args.rows)


if __name__ == "__main__":
    asyncio.run(main())
