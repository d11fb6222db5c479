"""What one request costs turnout, in CPU instructions counted by valgrind (callgrind): a figure
that does not move when other work shares the machine, unlike req/s or CPU seconds.

    .venv/bin/python bench/instructions.py                      # this checkout
    .venv/bin/python bench/instructions.py --baseline e01d4ff   # and turnout at that commit
    .venv/bin/python bench/instructions.py --limited --redis redis://127.0.0.1:6379/11
                                        # and with every rate limit on the key, its team and user
    .venv/bin/python bench/instructions.py --baseline-config 'metrics: {enabled: false}'
                                                                # and this checkout so configured

Each target is started as bench/run.py starts it (same config, the same accounted virtual key, the
same request body), but under `valgrind --tool=callgrind` with instrumentation off; after a warm-up,
instrumentation is switched on for `--requests` sequential requests on one keep-alive connection
and off again, so the count is those requests and nothing of start-up. Instructions per request
are the total divided by the requests. Wall time is not a result here: valgrind is ~50x slower.
The callgrind files (`bench/.build/callgrind-<target>-<mode>.out`) open with `callgrind_annotate`
for the functions the instructions went to. Needs valgrind (Debian's `valgrind`; installed if
missing and root) and the Go mock upstream (built as bench/run.py builds it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

import targets
from run import MODES  # the benchmark's request body for each mode

from harness import BENCH_DIR, BUILD_DIR, build_loadgen

TARGETS: dict[str, Callable[[int, str], AbstractContextManager[targets.Endpoint]]] = {
    "turnout": targets.turnout,
    "turnout-baseline": targets.turnout_baseline,
    "turnout-limited": targets.turnout_limited,
}


def ensure_valgrind() -> None:
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("needs valgrind (Debian/Ubuntu: apt-get install valgrind)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-q", "valgrind"]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def send(connection: http.client.HTTPConnection, path: str, body: bytes, key: str) -> None:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {answer[:300]!r}")


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL)


def measure(name: str, mode: str, requests: int, warmup: int, mock_port: int) -> float:
    out = BUILD_DIR / f"callgrind-{name}-{mode}.out"
    out.unlink(missing_ok=True)
    targets.OPTIONS.wrapper = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        "--quiet",
    )
    targets.OPTIONS.start_timeout = 600.0
    body = MODES[mode].read_bytes()
    with TARGETS[name](mock_port, f"instructions-{name}-{mode}") as endpoint:
        assert endpoint.process is not None
        pid = endpoint.process.proc.pid
        url = urlsplit(endpoint.url)
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)
        for _ in range(warmup):
            send(connection, url.path, body, endpoint.key)
        control(pid, "--instr=on")
        started = time.monotonic()
        for _ in range(requests):
            send(connection, url.path, body, endpoint.key)
        took = time.monotonic() - started
        control(pid, "--instr=off")
        control(pid, "--dump")
        busy = total_instructions(out)
        # What the gateway does on its own meanwhile (timers, flushes, heartbeats) runs ~50x as often
        # per request under valgrind as at full speed: measured idle for as long, and taken off.
        control(pid, "--zero")
        control(pid, "--instr=on")
        time.sleep(took)
        control(pid, "--instr=off")
        control(pid, "--dump")
        idle = total_instructions(out) - busy
        connection.close()
    each = (busy / requests / 1e6, idle / requests / 1e6)
    print(f"  {name} {mode}: {each[0]:.3f} M busy, {each[1]:.3f} M idle per request")
    return (busy - idle) / requests


def total_instructions(out: Path) -> int:
    """The instructions of every dump callgrind wrote for a run (`out` and `out.N`)."""
    total = 0
    for path in [out, *sorted(out.parent.glob(out.name + ".*"))]:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
                break
    return total


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--baseline", help="also measure turnout at this git ref")
    parser.add_argument(
        "--baseline-config",
        metavar="YAML",
        help="YAML added to the baseline's configuration; without --baseline the baseline is this "
        "checkout so configured (e.g. 'metrics: {enabled: false}')",
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--modes", default="json,stream")
    parser.add_argument("--limited", action="store_true", help="also measure turnout-limited")
    parser.add_argument("--redis", metavar="URL", help="share budgets and limits through this Redis")
    args = parser.parse_args()
    ensure_valgrind()
    build_loadgen()
    targets.OPTIONS.baseline = args.baseline
    targets.OPTIONS.redis_url = args.redis
    targets.OPTIONS.baseline_config = args.baseline_config
    compared = args.baseline or args.baseline_config
    names = ["turnout", *(["turnout-baseline"] if compared else [])]
    names += ["turnout-limited"] if args.limited else []
    results: dict[str, dict[str, float]] = {}
    with targets.mock_upstream() as mock_port:
        for mode in args.modes.split(","):
            for name in names:
                per_request = measure(name, mode, args.requests, args.warmup, mock_port)
                results.setdefault(name, {})[mode] = per_request
                print(f"{name:17} {mode:6} {per_request / 1e6:8.3f} M instructions per request", flush=True)
    if compared:
        for mode in args.modes.split(","):
            now, before = results["turnout"][mode], results["turnout-baseline"][mode]
            print(f"{mode:6} this checkout vs {compared}: {100 * (now / before - 1):+.1f}%")
    if args.limited:
        for mode in args.modes.split(","):
            limited, plain = results["turnout-limited"][mode], results["turnout"][mode]
            print(f"{mode:6} with rate limits vs without: {100 * (limited / plain - 1):+.1f}%")
    (BUILD_DIR / "instructions.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH_DIR))
    main()
