"""What a change costs in CPU per request, measured so that the machine's noise cancels out.

Two gateways run at the same time on the same core (core 1), each driven by its own closed loop
(16 clients) from core 0 against one mock upstream: this checkout's turnout, and turnout as
committed at REF, this checkout with `--config` YAML added to its configuration, or the bare
Python proxy (`--against bare`); `--master-key` calls the other gateway with the master key (no
budgets, no billing: what accounting costs). Whatever else the machine does slows both alike, so
the ratio of their CPU time per request holds still where whole-process throughput does not: on
2026-12-07, with a pure-Python loop taking 1.8x its quiet time, the ratio of rounds within a run
varied by about 1%, between runs by about 3%, and a run of a commit against itself read 0.99 to
1.02. Absolute figures are higher than alone (two processes share the core) and are not the
gateway's throughput: read the ratio.

    .venv/bin/python bench/paired.py main                    # this checkout against main, JSON
    .venv/bin/python bench/paired.py 553bb99 --mode stream --rounds 5
    .venv/bin/python bench/paired.py HEAD --against bare     # against the bare proxy
    .venv/bin/python bench/paired.py --config 'metrics: {enabled: false}'    # what metrics cost
    .venv/bin/python bench/paired.py HEAD --keys 100          # traffic from 100 keys (and teams)

REF is installed once into bench/.build/baseline-<commit>/ (as `bench/run.py --baseline` does).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import tempfile
import threading
from pathlib import Path

import targets
from run import MODES  # the benchmark's request body for each mode

import harness


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ref", nargs="?", help="a git ref: turnout as committed there is the other gateway")
    parser.add_argument("--mode", choices=("json", "stream"), default="json")
    parser.add_argument("--against", choices=("ref", "bare"), default="ref", help="the other gateway")
    parser.add_argument(
        "--config", metavar="YAML", help="the other is this checkout with YAML added to its config"
    )
    parser.add_argument("--master-key", action="store_true", help="call the other with the master key")
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds (after one warm-up)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per round")
    parser.add_argument("--concurrency", type=int, default=16, help="clients per gateway")
    parser.add_argument(
        "--keys", type=int, default=0, help="send from this many keys in turn, each in a team of its own"
    )
    return parser.parse_args(argv)


def one_round(
    endpoints: dict[str, targets.Endpoint],
    mode: str,
    duration: float,
    concurrency: int,
    keys: dict[str, Path] | None = None,
) -> dict[str, tuple[float, float]]:
    """Both loads at once: each gateway's (answered req/s, CPU ms per answered request); with
    `keys`, each gateway's requests take the keys in its file in turn."""
    body = MODES[mode]
    out: dict[str, tuple[float, float]] = {}

    def drive(name: str, endpoint: targets.Endpoint) -> None:
        assert endpoint.process is not None
        before = endpoint.process.cpu_seconds()
        report = harness.run_load(
            endpoint.url,
            body,
            stream=mode == "stream",
            duration=duration,
            warmup=0,
            concurrency=concurrency,
            headers=[f"Authorization: Bearer {endpoint.key}"],
            keys=None if keys is None else keys[name],
        )
        spent = endpoint.process.cpu_seconds() - before
        answered = int(report["ok"])  # type: ignore[call-overload]
        out[name] = (float(report["achieved_rps"]), 1000 * spent / max(answered, 1))  # type: ignore[arg-type]

    threads = [threading.Thread(target=drive, args=item) for item in endpoints.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def spread(endpoints: dict[str, targets.Endpoint], count: int, tmp: str) -> dict[str, Path] | None:
    """With `count`, that many keys on each gateway (each in a team of its own), in a file each."""
    if not count:
        return None
    files = {}
    for name, endpoint in endpoints.items():
        files[name] = Path(tmp) / f"{name}.keys"
        files[name].write_text("\n".join(targets.spread_keys(endpoint, count)) + "\n")
    print(f"each gateway's requests come from {count} keys in turn, each in a team of its own")
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.against == "ref" and (args.ref is None) == (args.config is None):
        raise SystemExit("give a git ref, or --config YAML (this checkout configured so), not both")
    targets.OPTIONS.baseline = args.ref
    targets.OPTIONS.baseline_config = args.config
    harness.build_loadgen()
    other: targets.Target = targets.bare if args.against == "bare" else targets.turnout_baseline
    ratios: list[float] = []
    with (
        contextlib.ExitStack() as stack,
        targets.mock_upstream() as mock,
        targets.turnout(mock, f"paired-new-{args.mode}") as mine,
        other(mock, f"paired-{args.against}-{args.mode}") as theirs,
    ):
        if args.master_key:
            theirs = dataclasses.replace(
                theirs, key=targets.MASTER_KEY, version=f"{theirs.version}, master key"
            )
        endpoints = {"turnout": mine, args.against: theirs}
        print(f"turnout ({mine.version}, this checkout) and {theirs.name} ({theirs.version}), both on core 1")
        keys = spread(endpoints, args.keys, stack.enter_context(tempfile.TemporaryDirectory()))
        one_round(endpoints, args.mode, 3.0, args.concurrency, keys)  # warm-up, not counted
        for number in range(1, args.rounds + 1):
            got = one_round(endpoints, args.mode, args.duration, args.concurrency, keys)
            (rps, cpu), (their_rps, their_cpu) = got["turnout"], got[args.against]
            ratios.append(cpu / their_cpu)
            print(
                f"round {number}: turnout {rps:,.0f} req/s {cpu:.4f} ms/req | {args.against} "
                f"{their_rps:,.0f} req/s {their_cpu:.4f} ms/req | ratio {ratios[-1]:.3f}",
                flush=True,
            )
    print(
        f"CPU per request, turnout / {args.against}: median {statistics.median(ratios):.3f} "
        f"(rounds {min(ratios):.3f} to {max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
