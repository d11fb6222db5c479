"""turnout's benchmark: direct to the mock upstream, through turnout, through LiteLLM, in one run.

Run from the checkout:  .venv/bin/python bench/run.py   (--quick for a smoke run; --help)
Prints a markdown table per mode and the issue's goals; writes everything to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from report import Load, PairedRounds, TargetMode, render
from targets import LOAD_CPUS, OPTIONS, TARGETS, Endpoint, ensure_litellm, mock_upstream

from harness import BENCH_DIR, Process, build_loadgen, run_load

MODES = {
    "json": BENCH_DIR / "bodies" / "chat_10msg_2tools.json",
    "stream": BENCH_DIR / "bodies" / "chat_10msg_2tools_stream.json",
}
RESULTS_DIR = BENCH_DIR / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 3 s measured after 1 s warm-up")
    p.add_argument("--duration", type=float, help="measured seconds per load (default 10)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each load (default 2)")
    p.add_argument("--rates", default="100,500,1000", help="open-loop offered rates, req/s")
    p.add_argument("--ref-rate", type=float, default=500, help="rate the latency goals are read at")
    p.add_argument("--concurrency", type=int, default=32, help="clients in the closed loop")
    p.add_argument("--modes", default="json,stream", help="json, stream or both")
    p.add_argument("--only", help=f"comma-separated targets among {','.join(TARGETS)}")
    p.add_argument("--skip-litellm", action="store_true", help="leave LiteLLM out")
    p.add_argument(
        "--master-key", action="store_true", help="turnout: load with the master key (no budgets, no billing)"
    )
    p.add_argument(
        "--redis", metavar="URL", help="turnout: share budgets through this Redis (storage.redis_url)"
    )
    p.add_argument("--max-in-flight", type=int, default=512, help="open loop: cap on outstanding requests")
    p.add_argument("--timeout", type=float, default=10, help="per-request timeout, s")
    p.add_argument("--drain", type=float, default=10, help="wait this long for late answers, s")
    p.add_argument("--wait-quiet", type=float, help="wait up to this long for other load to stop, s")
    p.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    p.add_argument("--rounds", type=int, help="paired direct/turnout rounds for the goals (default 3)")
    p.add_argument(
        "--baseline",
        metavar="REF",
        help="also run turnout as committed at this git ref (e.g. main), as target turnout-baseline",
    )
    p.add_argument(
        "--baseline-config",
        metavar="YAML",
        help="YAML added to the baseline's configuration; without --baseline the baseline is this "
        "checkout so configured (e.g. 'metrics: {enabled: false}')",
    )
    args = p.parse_args(argv)
    OPTIONS.master_key, OPTIONS.redis_url, OPTIONS.baseline = args.master_key, args.redis, args.baseline
    OPTIONS.baseline_config = args.baseline_config
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 120.0)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    names = [t.strip() for t in args.only.split(",")] if args.only else list(TARGETS)
    if args.skip_litellm:
        names = [n for n in names if n != "litellm"]
    if args.baseline is None and args.baseline_config is None:
        names = [n for n in names if n != "turnout-baseline"]
    elif "turnout-baseline" not in names:
        names.append("turnout-baseline")
    unknown = set(names) - set(TARGETS) or set(args.mode_list) - set(MODES)
    if unknown:
        p.error(f"unknown target or mode: {', '.join(sorted(unknown))}")
    args.targets = [n for n in TARGETS if n in names]  # direct first: it is every other's baseline
    return args


class CpuWindow(threading.Thread):
    """Reads a process's CPU time at the start and end of a load's measured window."""

    def __init__(self, process: Process | None, warmup: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.process, self.warmup, self.duration = process, warmup, duration
        self.used: float | None = None

    def run(self) -> None:
        if self.process is None:
            return
        time.sleep(self.warmup)
        before = self.process.cpu_seconds()
        time.sleep(self.duration)
        self.used = self.process.cpu_seconds() - before


def busy_share(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds`, from /proc/stat."""

    def snapshot() -> tuple[int, int]:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)

    busy0, total0 = snapshot()
    time.sleep(seconds)
    busy1, total1 = snapshot()
    return (busy1 - busy0) / max(total1 - total0, 1)


def wait_quiet(limit: float, threshold: float = 0.1) -> float:
    """Wait up to `limit` seconds for other processes to leave the machine idle; return its busy share."""
    deadline = time.monotonic() + limit
    busy = busy_share()
    if busy > threshold and limit > 0:
        print(f"  machine {busy:.0%} busy with other work, waiting up to {limit:g} s ...", flush=True)
    while busy > threshold and time.monotonic() < deadline:
        busy = busy_share(5.0)
    if busy > threshold:
        print(f"  WARNING: machine {busy:.0%} busy before the run: expect noisy figures", flush=True)
    return busy


def settle(process: Process | None, limit: float = 60.0) -> None:
    """Wait until the gateway is idle (a saturated one may still be working off its backlog)."""
    if process is None:
        time.sleep(0.5)
        return
    deadline = time.monotonic() + limit
    last = process.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = process.cpu_seconds()
        if now - last < 0.05:  # under 10% of a core
            return
        last = now


def measure(endpoint: Endpoint, mode: str, rate: float | None, args: argparse.Namespace) -> Load:
    label = f"{rate:g} req/s" if rate else f"{args.concurrency} conc."
    window = CpuWindow(endpoint.process, args.warmup, args.duration)
    window.start()
    try:
        report = run_load(
            endpoint.url,
            MODES[mode],
            stream=mode == "stream",
            rate=rate or 0,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            headers=[f"Authorization: Bearer {endpoint.key}"],
            cpus=LOAD_CPUS,
            drain=args.drain,
            max_in_flight=args.max_in_flight,
            request_timeout=args.timeout,
        )
    except (subprocess.SubprocessError, ValueError) as exc:
        return Load(label, rate, error=f"load generator failed: {exc}")
    window.join()
    ok = int(str(report.get("ok", 0)))
    cpu = window.used * 1000 / ok if window.used is not None and ok else None
    return Load(label, rate, report, cpu)


def run_target(name: str, mode: str, mock_port: int, args: argparse.Namespace) -> TargetMode:
    tm = TargetMode(name, mode)
    print(f"  {name:17} {mode:6} starting ...", flush=True)
    try:
        with TARGETS[name](mock_port, f"{name}-{mode}") as endpoint:
            tm.version = endpoint.version
            proc = endpoint.process
            tm.log = str(proc.log_path) if proc else None
            time.sleep(1.0)
            tm.rss_idle_mib = proc.rss_mib()[0] if proc else None
            for rate in [*args.rate_list, None]:
                load = measure(endpoint, mode, rate, args)
                tm.loads.append(load)
                print(f"  {name:17} {mode:6} {load.label:>11}: {progress(load)}", flush=True)
                if proc and proc.proc.poll() is not None:
                    tm.error = f"gateway exited with {proc.proc.returncode} during the run"
                    break
                settle(proc)
            if proc and tm.error is None:
                tm.rss_after_mib, tm.rss_peak_mib = proc.rss_mib()
    except (RuntimeError, TimeoutError, OSError) as exc:
        tm.error = f"{type(exc).__name__}: {exc}"
        print(f"  {name:17} {mode:6}: FAILED {tm.error}", flush=True)
    return tm


def paired_rounds(mode: str, mock_port: int, args: argparse.Namespace) -> PairedRounds:
    """Direct, the bare reference proxy and turnout (then turnout-3 and turnout-anthropic when they
    are among the targets) in turn at the reference rate, `args.rounds` times (one process each for
    all rounds): each round's differences are taken under the same conditions, and the bare proxy
    shows what any Python proxy gets in them."""
    rounds = PairedRounds(mode, args.ref_rate)
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(TARGETS["direct"](mock_port, "direct"))
        bare = stack.enter_context(TARGETS["bare"](mock_port, f"bare-{mode}-paired"))
        mine = stack.enter_context(TARGETS["turnout"](mock_port, f"turnout-{mode}-paired"))
        lineup = [(base, rounds.direct), (bare, rounds.bare), (mine, rounds.turnout)]
        if "turnout-baseline" in args.targets:
            then = stack.enter_context(
                TARGETS["turnout-baseline"](mock_port, f"turnout-baseline-{mode}-paired")
            )
            lineup.append((then, rounds.baseline))
        if "turnout-3" in args.targets:
            weighted = stack.enter_context(TARGETS["turnout-3"](mock_port, f"turnout-3-{mode}-paired"))
            lineup.append((weighted, rounds.weighted))
        if "turnout-anthropic" in args.targets:
            translated = stack.enter_context(
                TARGETS["turnout-anthropic"](mock_port, f"turnout-anthropic-{mode}-paired")
            )
            lineup.append((translated, rounds.translated))
        for endpoint, _ in lineup[1:]:
            measure(endpoint, mode, args.ref_rate, args)  # warm the gateways up once, unrecorded
        for i in range(args.rounds):
            for endpoint, into in lineup:
                settle(endpoint.process)
                load = measure(endpoint, mode, args.ref_rate, args)
                into.append(load)
                print(f"  round {i + 1} {endpoint.name:17} {mode:6}: {progress(load)}", flush=True)
            if "turnout-baseline" in args.targets:  # throughput, alternating, in the same conditions
                for endpoint, into in ((mine, rounds.closed_turnout), (then, rounds.closed_baseline)):
                    settle(endpoint.process)
                    load = measure(endpoint, mode, None, args)
                    into.append(load)
                    print(f"  round {i + 1} {endpoint.name:17} {mode:6} closed: {progress(load)}", flush=True)
    return rounds


def progress(load: Load) -> str:
    if load.error:
        return load.error
    r = load.report
    text = (
        f"{r['achieved_rps']:8.1f} req/s  p50 {r['latency_ms']['p50']:7.2f} ms  "
        f"p99 {r['latency_ms']['p99']:8.2f} ms  errors {load.errors()}"
    )
    if load.cpu_ms_per_req is not None:
        text += f"  cpu {load.cpu_ms_per_req:.3f} ms/req"
    return text


def machine() -> dict[str, Any]:
    cpu = next(
        (
            x.split(":", 1)[1].strip()
            for x in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in x
        ),
        platform.processor(),
    )
    rev = _git("rev-parse", "--short", "HEAD") + ("+changes" if _git("status", "--porcelain") else "")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": sys.version,
        "git": rev,
    }


def _git(*args: str) -> str:
    """Read-only git queries about the checkout, for the record."""
    try:
        done = subprocess.run(["git", "-C", str(BENCH_DIR), *args], capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now()
    print(f"building the load generator ... {build_loadgen()}", flush=True)
    if "litellm" in args.targets:
        ensure_litellm()
    total = len(args.targets) * len(args.mode_list) * (len(args.rate_list) + 1)
    est = total * (args.warmup + args.duration + 1)
    print(f"{total} loads of {args.warmup:g}+{args.duration:g} s, at least {est / 60:.1f} min", flush=True)
    busy = [wait_quiet(args.wait_quiet)]
    results: list[TargetMode] = []
    paired: list[PairedRounds] = []
    with mock_upstream(args.chunks) as mock_port:
        for mode in args.mode_list:
            print(f"== {mode}", flush=True)
            if mode != args.mode_list[0]:
                busy.append(wait_quiet(args.wait_quiet))
            results += [run_target(name, mode, mock_port, args) for name in args.targets]
            if args.rounds and {"direct", "turnout"} <= set(args.targets):
                print(
                    f"== {mode}: {args.rounds} paired rounds at {args.ref_rate:g} req/s for the goals",
                    flush=True,
                )
                paired.append(paired_rounds(mode, mock_port, args))
    info = machine()
    preamble = (
        f"{started_at:%Y-%m-%d %H:%M} · {info['cpu']} · turnout {info['git']} · gateway alone on core 1, "
        f"load generator + mock upstream on core 0 · {args.warmup:g} s warm-up + {args.duration:g} s "
        f"measured per load · other load on the machine before each mode: "
        + ", ".join(f"{b:.0%}" for b in busy)
    )
    text = render(results, args.ref_rate, preamble, paired)
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / f"bench-{started_at:%Y%m%d-%H%M%S}"
    meta = {
        "started": started_at.isoformat(timespec="seconds"),
        "seconds": round((datetime.now() - started_at).total_seconds()),
        "machine": info,
        "busy_before_each_mode": busy,
        "args": {k: v for k, v in vars(args).items() if k not in {"rate_list", "mode_list"}},
    }
    payload = {
        "meta": meta,
        "results": [dataclasses.asdict(r) for r in results],
        "paired": [dataclasses.asdict(p) for p in paired],
    }
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print("\n" + text)
    print(f"results: {stem}.json and .md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
