"""What moving the ledger journal into the database costs, a row at a time.

Run from the checkout:  .venv/bin/python bench/ledger_move.py   (--help for the knobs)

The gateway journals each attempt as it is answered and, once a second, moves the journal's entries
into the ledger (spend/recorder.py: `Journal.move` reads a sealed segment and `LedgerStore.insert`
inserts its rows, adding them to the running totals, in batches). That work is off the request but
on the gateway's core: at the benchmark's load it is about 9% of a JSON request's CPU
(docs/architecture.md). This measures it without the gateway, so a change to it can be read in
microseconds a row: `--rows` entries like the benchmark's (one key, model and deployment; `--keys`
spreads them over more keys, as real traffic is) are written to a journal and moved into a fresh
SQLite file (the default store), or with `--postgres HOST` into a database of its own on that
PostgreSQL server (`turnout_bench_move`, user `--user`, no password; dropped before and after),
`--rounds` times. It prints the CPU a row of the whole move (every
thread: aiosqlite's too) and of the event loop's thread, the best of the rounds, then what the
move's own steps take a row in isolation (timeit): the INSERT's bound values, the running totals,
the cube's cells, and the INSERT on the standard library's sqlite3 alone (SQLite's own work).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
import timeit
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.cube import CubeBuilder
from turnout.spend.journal import BATCH, Journal
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.rollups import RollupBuilder, as_values
from turnout.storage.database import Database


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000, help="entries moved a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=1, help="keys (and teams) the entries spread over")
    parser.add_argument("--postgres", metavar="HOST", help="move into PostgreSQL on HOST, not SQLite")
    parser.add_argument("--user", default="postgres", help="PostgreSQL user (no password)")
    return parser.parse_args(argv)


def entries(count: int, first: int, keys: int) -> list[LedgerEntry]:
    """What the benchmark's JSON request journals: one attempt, priced, answered."""
    now = time.time()
    return [
        LedgerEntry(
            request_id=f"req_{first + i:032x}",
            at=now + i / 1000,
            api="chat",
            key_id=f"key_{(first + i) % keys:016x}",
            team_id=f"team_{(first + i) % keys:08x}",
            alias="bench-model",
            deployment="bench/0",
            provider="openai",
            model="bench-model-2024-08-06",
            input_tokens=412,
            output_tokens=58,
            cost_micros=1610,
            customer_price_micros=1610,
            price_version="2024-08-06",
            latency_ms=1,
            attempts=1,
        )
        for i in range(count)
    ]


async def move_once(store: LedgerStore, directory: Path, rows: list[LedgerEntry]) -> tuple[float, float]:
    """Journal `rows`, then move them as the recorder does: (CPU of every thread, of this one)."""
    journal = Journal(directory)
    for entry in rows:
        journal.append(entry)
    journal.seal()
    every, mine = time.process_time(), time.thread_time()
    moved = await journal.move(store.insert)
    every, mine = time.process_time() - every, time.thread_time() - mine
    journal.close()
    assert moved == len(rows), f"moved {moved} of {len(rows)}"
    return every, mine


def per_row(seconds: float, rows: int) -> str:
    return f"{seconds / rows * 1e6:6.2f} µs"


async def steps(store: LedgerStore, rows: list[LedgerEntry]) -> dict[str, float]:
    """Each step of the move on one batch, in isolation: seconds a row (best of 5)."""
    batch = rows[:BATCH]

    def rollups() -> None:
        builder = RollupBuilder()
        builder.add(batch)
        as_values(builder.cells())

    def cube() -> None:
        builder = CubeBuilder()
        builder.add(batch)
        builder.values(0, builder.cells())

    timed = {"the running totals (rollups)": rollups, "the cube's cells": cube}
    sqlite = store._sqlite  # what the SQLite INSERT binds
    if sqlite is not None:
        timed = {"the INSERT's bound values": lambda: [sqlite.row(e) for e in batch], **timed}
    out = {name: min(timeit.repeat(f, number=10, repeat=5)) / 10 / len(batch) for name, f in timed.items()}
    if sqlite is not None:
        out["the INSERT on sqlite3 alone"] = await sqlite_alone(sqlite.sql, [sqlite.row(e) for e in rows])
    return out


async def sqlite_alone(sql: str, values: list[tuple[object, ...]]) -> float:
    """The ledger's INSERT of `values` by the standard library's sqlite3, in a fresh file with the
    ledger's schema (SQLite's own work, no asyncio, no thread): seconds a row."""
    with tempfile.TemporaryDirectory(prefix="turnout-ledger-move-") as tmp:
        schema = await Database.open(f"sqlite+aiosqlite:///{tmp}/alone.db")
        await schema.close()
        connection = sqlite3.connect(f"{tmp}/alone.db", isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        started = time.thread_time()
        connection.execute("BEGIN")
        for start in range(0, len(values), BATCH):
            connection.executemany(sql, values[start : start + BATCH])
        connection.execute("COMMIT")
        spent = time.thread_time() - started
        connection.close()
    return spent / len(values)


PG_DATABASE = "turnout_bench_move"


@contextlib.asynccontextmanager
async def database_url(args: argparse.Namespace, tmp: str) -> AsyncIterator[str]:
    """A fresh SQLite file in `tmp`, or a fresh database on the PostgreSQL server (dropped after)."""
    if args.postgres is None:
        yield f"sqlite+aiosqlite:///{tmp}/ledger.db"
        return
    admin = await asyncpg.connect(host=args.postgres, user=args.user, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        yield f"postgresql+asyncpg://{args.user}@{args.postgres}/{PG_DATABASE}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        await admin.close()


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="turnout-ledger-move-") as tmp:
        async with database_url(args, tmp) as url:
            await measure_in(args, tmp, url)


async def measure_in(args: argparse.Namespace, tmp: str, url: str) -> None:
    database = await Database.open(url)
    store = LedgerStore(database)
    print(f"moving {args.rows:,} rows a round into {database.engine.dialect.name}, batches of {BATCH}")
    await move_once(store, Path(tmp) / "warm-up", entries(BATCH, 0, args.keys))
    rounds: list[tuple[float, float]] = []
    for number in range(1, args.rounds + 1):
        rows = entries(args.rows, number * 10 * args.rows, args.keys)
        rounds.append(await move_once(store, Path(tmp) / f"journal-{number}", rows))
        every, mine = (per_row(seconds, args.rows) for seconds in rounds[-1])
        print(f"round {number}: {every} a row, {mine} on the loop")
    every, mine = (per_row(min(r[i] for r in rounds), args.rows) for i in (0, 1))
    print(f"best: {every} a row (every thread), {mine} on the loop")
    print("the move's steps, each alone:")
    for name, seconds in (await steps(store, entries(args.rows, 0, args.keys))).items():
        print(f"  {per_row(seconds, 1)}  {name}")
    await database.close()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(measure(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
