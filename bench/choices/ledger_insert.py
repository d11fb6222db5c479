"""What the running totals cost the ledger's writer: a second's journal at 500 requests a second
(500 rows: 20 keys, 5 teams, 3 models; one attempt each, or two each as in an outage) inserted
as turnout does now (rows, RETURNING, totals, one transaction) and as it did before the totals
(rows only), on SQLite and, with --pg, PostgreSQL; with the longest the event loop was held.

    .venv/bin/python bench/choices/ledger_insert.py [--pg postgresql+asyncpg://postgres@127.0.0.1/DB]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.ledger_store import CHUNK, LedgerStore, as_row
from turnout.storage.database import Database
from turnout.storage.tables import ledger

BATCHES = 40


def second_of_traffic(n: int, retried: bool) -> list[LedgerEntry]:
    now = time.time()
    rng = random.Random(n)
    rows = []
    for i in range(500):
        request = i // 2 if retried else i
        rows.append(
            LedgerEntry(
                request_id=f"{'x' if retried else 'o'}{n}-r{request}",
                attempt=1 + i % 2 if retried else 1,
                attempts=2 if retried else 1,
                at=now - request / 1000,
                api="chat",
                key_id=f"k{request % 20}",
                team_id=f"t{request % 5}",
                user_id=f"u{request % 20}",
                alias="fast",
                deployment=f"d{i % 3}",
                provider="p",
                model=f"m{i % 3}",
                status=502 if retried and i % 2 == 0 else 200,
                input_tokens=rng.randrange(2000),
                output_tokens=rng.randrange(500),
                cost_micros=rng.randrange(10**5),
                customer_price_micros=rng.randrange(10**5),
                latency_ms=300,
            )
        )
    return rows


async def rows_only(database: Database, entries: list[LedgerEntry]) -> None:
    """The insert before the totals."""
    statement = database.insert_new(ledger, "request_id", "attempt")
    async with database.engine.begin() as conn:
        for start in range(0, len(entries), CHUNK):
            await conn.execute(statement, [as_row(e) for e in entries[start : start + CHUNK]])


async def held_longest(work: asyncio.Task[None]) -> float:
    """The longest gap between two turns of a 1 ms ticker while `work` runs (the loop's hold)."""
    longest = 0.0
    last = time.perf_counter()
    while not work.done():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        longest = max(longest, now - last - 0.001)
        last = now
    return longest


async def measure(url: str, retried: bool) -> dict[str, tuple[float, float]]:
    database = await Database.open(url)
    store = LedgerStore(database)
    out = {}
    try:
        for name, insert in (
            ("rows only (before)", lambda e: rows_only(database, e)),
            ("rows + totals", store.insert),
        ):
            times, holds = [], []
            for n in range(BATCHES):
                entries = second_of_traffic(n + (1000 if name.startswith("rows +") else 0), retried)
                start = time.perf_counter()
                task = asyncio.get_running_loop().create_task(insert(entries))
                holds.append(await held_longest(task))
                await task
                times.append(time.perf_counter() - start)
            out[name] = (statistics.median(times), statistics.median(holds))
    finally:
        await database.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg", help="a PostgreSQL URL (an empty database)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        urls = {"SQLite": f"sqlite+aiosqlite:///{Path(data) / 'bench.db'}"}
        if args.pg:
            urls["PostgreSQL"] = args.pg
        print("| database | traffic | insert | batch of 500, median ms | longest loop hold, median ms |")
        print("|---|---|---|---|---|")
        for backend, url in urls.items():
            for retried in (False, True):
                for name, (seconds, hold) in (await measure(url, retried)).items():
                    traffic = "two attempts each" if retried else "one attempt each"
                    print(f"| {backend} | {traffic} | {name} | {seconds * 1000:.1f} | {hold * 1000:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
