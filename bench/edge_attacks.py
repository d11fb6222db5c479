"""Hostile anonymous clients against `turnout serve`: the memory they take and how long they are kept.

    .venv/bin/python bench/edge_attacks.py                  # this checkout
    .venv/bin/python bench/edge_attacks.py --src OTHER/src  # another checkout's code, same venv

Each attack runs on a fresh gateway (a fake provider, default settings) for `--window` seconds:
  big-headers   10 connections, each sending one endless header value at full speed (64 MiB at most)
  slow-headers  50 connections sending a head one short line every 5 s, never finishing it
  slow-bodies   20 connections declaring a 1 GB body and sending one byte a second
and the gateway's resident memory before and at its peak is printed, with how many connections it
still held at the end of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"


def start_gateway(src: str | None, data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    config = data_dir / "turnout.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"data_dir": str(data_dir)},
                "providers": {"local": {"type": "fake"}},
                "models": {"fake/*": {"provider": "local", "model": "*"}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    env |= {"TURNOUT_MASTER_KEY": "sk-bench-master-0123456789", "TURNOUT_LOG_LEVEL": "warning"}
    if src:
        env["PYTHONPATH"] = src
    code = "from turnout.cli.main import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--config", str(config), "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe empty
            return proc, int(match.group(1))
    raise SystemExit("turnout serve did not start")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.closed = False

    async def watch(self) -> None:
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.closed = True

    async def send(self, data: bytes) -> bool:
        if self.closed:
            return False
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            self.closed = True
        return not self.closed


async def big_headers(c: Connection) -> None:
    await c.send(HEAD + b"X-Endless: ")
    piece = b"h" * 65536
    for _ in range(1024):  # 64 MiB
        if not await c.send(piece):
            return


async def slow_headers(c: Connection) -> None:
    await c.send(HEAD)
    for i in range(10_000):
        await asyncio.sleep(5)
        if not await c.send(b"X-Slow-%d: s\r\n" % i):
            return


async def slow_bodies(c: Connection) -> None:
    await c.send(HEAD + b"Content-Length: 1000000000\r\n\r\n{")
    for _ in range(100_000):
        await asyncio.sleep(1)
        if not await c.send(b" "):
            return


Behaviour = Callable[[Connection], Awaitable[None]]
ATTACKS: dict[str, tuple[int, Behaviour]] = {
    "big-headers": (10, big_headers),
    "slow-headers": (50, slow_headers),
    "slow-bodies": (20, slow_bodies),
}


async def attack(port: int, pid: int, count: int, behave: Behaviour, window: float) -> str:
    before = rss_mib(pid)
    peak = before
    connections = [Connection(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(count)]
    tasks = [asyncio.create_task(t) for c in connections for t in (c.watch(), behave(c))]
    end = time.monotonic() + window
    while time.monotonic() < end:
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(0.25)
    still_open = sum(not c.closed for c in connections)
    for task in tasks:
        task.cancel()
    for c in connections:
        c.writer.close()
    return (
        f"RSS {before:.0f} MiB -> peak {peak:.0f} MiB; "
        f"{still_open}/{count} connections still open after {window:g} s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", help="import turnout from this directory (another checkout's src/)")
    p.add_argument("--window", type=float, default=45.0, help="seconds each attack lasts")
    p.add_argument("--only", help=f"comma-separated among {','.join(ATTACKS)}")
    args = p.parse_args()
    chosen = args.only.split(",") if args.only else list(ATTACKS)
    for name in chosen:
        count, behave = ATTACKS[name]
        with tempfile.TemporaryDirectory() as tmp:
            proc, port = start_gateway(args.src, Path(tmp))
            try:
                time.sleep(1)  # let start-up settle before the baseline is read
                outcome = asyncio.run(attack(port, proc.pid, count, behave, args.window))
                print(f"{name:13} {outcome}", flush=True)
            finally:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
