"""Does the web console add work to the proxy's path? A gateway (in this process, its own thread
and loop) with the console on serves N sequential chat requests to the fake provider under
cProfile: how many calls went to a function of turnout.console (the answer must be 0), and the
calls of the whole gateway thread per request, with the console on and off (those include the
background tasks' — key sync, the spend recorder — so they differ by a few per cent from run to
run either way; the first figure is the exact one).

    .venv/bin/python bench/console_calls.py            # N = 500
    .venv/bin/python bench/console_calls.py --n 2000
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.gateway import MASTER_KEY, Gateway, settings_for

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}


CONSOLE = str(Path(__file__).resolve().parents[1] / "src" / "turnout" / "console")


def calls(gateway: Gateway, client: httpx.Client, n: int) -> tuple[int, int]:
    """(every call the gateway's thread made, the calls to the console's functions)."""
    profile = cProfile.Profile()
    gateway.call(profile.enable)  # profiles the gateway's own thread
    for _ in range(n):
        assert client.post("/v1/chat/completions", json=BODY).status_code == 200
    gateway.call(profile.disable)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(stat[1] for stat in stats.values())
    console = sum(stat[1] for (file, _, _), stat in stats.items() if file.startswith(CONSOLE))
    return total, console


def per_request(console: bool, n: int) -> tuple[float, int]:
    doc = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
        "console": {"enabled": console},
    }
    gateway = Gateway(settings_for(doc, Path(tempfile.mkdtemp()))).start()
    try:
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        with httpx.Client(base_url=gateway.root_url, headers=headers, timeout=30) as client:
            calls(gateway, client, 50)  # warm
            (one, _), (two, in_console) = calls(gateway, client, n), calls(gateway, client, 2 * n)
            return (two - one) / n, in_console
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    n = parser.parse_args().n
    (on, in_console), (off, _) = per_request(True, n), per_request(False, n)
    print(f"calls to turnout.console's functions during {2 * n} /v1 requests with it on: {in_console}")
    print(f"the gateway thread's calls per /v1 request: console on {on:.1f}, off {off:.1f}")


if __name__ == "__main__":
    main()
