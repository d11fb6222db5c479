"""CPU per upstream call of each HTTP client candidate, in isolation (no server work).

Run: python bench/choices/client_cost.py aiohttp|aiohttp-tuned|httptools   (mock on 127.0.0.1:9100,
e.g. `bench/.build/turnout-loadgen mock --addr 127.0.0.1:9100`, pinned to another core).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop

from rawclient import Pool

BODY = (Path(__file__).resolve().parents[1] / "bodies" / "chat_10msg_2tools.json").read_bytes()
URL = "http://127.0.0.1:9100/v1/chat/completions"
N, CONCURRENCY = 20000, 32


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(name: str, one: Callable[[], Awaitable[None]]) -> None:
    for _ in range(200):
        await one()
    per_worker = N // CONCURRENCY
    started, cpu0 = time.perf_counter(), cpu()

    async def worker() -> None:
        for _ in range(per_worker):
            await one()

    await asyncio.gather(*[worker() for _ in range(CONCURRENCY)])
    total = per_worker * CONCURRENCY
    print(
        f"{name:14s} {total / (time.perf_counter() - started):8.0f} req/s  "
        f"{(cpu() - cpu0) * 1e6 / total:6.1f} us CPU/req"
    )


async def run_aiohttp(tuned: bool) -> None:
    if tuned:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
    else:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}

    async def one() -> None:
        async with session.post(URL, data=BODY, headers=headers) as response:
            await response.read()

    await measure("aiohttp-tuned" if tuned else "aiohttp", one)
    await session.close()


async def run_httptools() -> None:
    pool = Pool("127.0.0.1", 9100)
    headers = "Content-Type: application/json\r\nAuthorization: Bearer x\r\n"

    async def one() -> None:
        _, conn = await pool.post("/v1/chat/completions", BODY, headers)
        async for _ in pool.chunks(conn):
            pass

    await measure("httptools", one)


if __name__ == "__main__":
    choice = sys.argv[1] if len(sys.argv) > 1 else "httptools"
    runners = {
        "aiohttp": lambda: run_aiohttp(False),
        "aiohttp-tuned": lambda: run_aiohttp(True),
        "httptools": run_httptools,
    }
    uvloop.run(runners[choice]())
