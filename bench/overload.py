"""turnout under overload: admission control and priority classes, measured open loop.

Run from the checkout:  .venv/bin/python bench/overload.py   (--help for the knobs)

The mock upstream is a provider at capacity: a fixed latency and a fixed number of answers in
progress (`--slots`), so the gateway's capacity is slots / latency and every request beyond it
queues somewhere. turnout runs alone on core 1 with its default `server.overload`; the mock and
the load generator share core 0. In one gateway process, one phase after the other:

1. unloaded: half the capacity, the latency every other figure is compared with;
2. overload: 10x the capacity with one key: goodput, the admitted requests' p99, how fast the
   excess is refused (503), the gateway's RSS;
3. recovery: back to half the capacity, in 5 s slices: when latency and errors are normal again;
4. priorities: a `critical` key at 20% of the capacity alone, then beside a `batch` key at 10x.

Then, for contrast, the same overload against a gateway with `server.overload.enabled: false`.
Prints the figures and the issue's goals; writes everything to bench/results/overload-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from targets import GATEWAY_CPUS, LOAD_CPUS, MASTER_KEY, ONE_DEPLOYMENT, _admin, _clean_env

from harness import BENCH_DIR, LOADGEN_BIN, Process, build_loadgen, free_port, run_load, started

BODY = BENCH_DIR / "bodies" / "chat_10msg_2tools.json"
RESULTS_DIR = BENCH_DIR / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency", type=float, default=0.1, help="the mock's latency, seconds (0.1)")
    p.add_argument("--slots", type=int, default=20, help="answers the mock gives at once (20)")
    p.add_argument("--factor", type=float, default=10, help="the overload, times the capacity (10)")
    p.add_argument("--phase", type=float, default=20, help="seconds per measured phase (20)")
    p.add_argument("--recovery", type=float, default=30, help="seconds of recovery measured, in 5 s slices")
    p.add_argument("--skip-contrast", action="store_true", help="no run without admission control")
    return p.parse_args(argv)


@contextlib.contextmanager
def mock(latency: float, slots: int) -> Iterator[int]:
    port = free_port()
    cmd = [str(LOADGEN_BIN), "mock", "--addr", f"127.0.0.1:{port}", "--latency", f"{latency}s"]
    cmd += ["--slots", str(slots)]
    with started("overload-mock", cmd, port, LOAD_CPUS):
        yield port


@contextlib.contextmanager
def gateway(mock_port: int, enabled: bool) -> Iterator[tuple[str, Process]]:
    exe = Path(sys.executable).parent / "turnout"
    binary = str(exe) if exe.exists() else shutil.which("turnout")
    assert binary, "the 'turnout' command is not installed in this Python environment"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="turnout-overload-") as tmp:
        config = Path(tmp) / "turnout.yaml"
        overload = "" if enabled else ", overload: {enabled: false}"
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {port}{overload}}}\n"
            f"storage: {{data_dir: {tmp}/data}}\n"
            "routing: {retries: {attempts: 1}}\n" + ONE_DEPLOYMENT.format(port=mock_port)
        )
        env = {**_clean_env(), "TURNOUT_MASTER_KEY": MASTER_KEY}
        log = "overload-turnout" if enabled else "overload-turnout-unguarded"
        cmd = [binary, "serve", "--config", str(config)]
        with started(log, cmd, port, GATEWAY_CPUS, env=env, cwd=Path(tmp)) as proc:
            yield f"http://127.0.0.1:{port}", proc


def key(root: str, priority: str | None) -> str:
    body: dict[str, object] = {"name": f"{priority or 'standard'} load"}
    if priority:
        body["metadata"] = {"priority": priority}
    return str(_admin(root, "/admin/keys", body)["key"])


def load(root: str, api_key: str, rate: float, duration: float, warmup: float = 0) -> dict[str, Any]:
    return run_load(
        root + "/v1/chat/completions",
        BODY,
        stream=False,
        rate=rate,
        duration=duration,
        warmup=warmup,
        headers=[f"Authorization: Bearer {api_key}"],
        cpus=LOAD_CPUS,
        drain=15,
        max_in_flight=5000,
        request_timeout=20,
    )


def summary(report: dict[str, Any]) -> dict[str, Any]:
    refused = report.get("status_latency_ms", {}).get("503", {})
    return {
        "offered": report["offered_rate"],
        "ok_rps": round(report["achieved_rps"], 1),
        "ok_p50_ms": report["latency_ms"]["p50"],
        "ok_p99_ms": report["latency_ms"]["p99"],
        "refused": report["error_samples"].get("status 503", 0),
        "refused_p50_ms": refused.get("p50"),
        "refused_p99_ms": refused.get("p99"),
        "other_errors": {k: v for k, v in report["error_samples"].items() if k != "status 503"},
        # how late the load generator itself sent (counted in every latency above)
        "send_lag_p99_ms": report["send_lag_ms"]["p99"],
    }


def overload_phase(root: str, proc: Process, api_key: str, rate: float, duration: float) -> dict[str, Any]:
    cpu = proc.cpu_seconds()
    began = time.monotonic()
    report = load(root, api_key, rate, duration, warmup=2)
    out = summary(report)
    out["gateway_cpu_share"] = round((proc.cpu_seconds() - cpu) / (time.monotonic() - began), 2)
    out["rss_peak_mib"] = round(proc.rss_mib()[1], 1)
    return out


def recovery(root: str, api_key: str, rate: float, total: float, unloaded_p99: float) -> dict[str, Any]:
    slices = []
    recovered_at = None
    for i in range(max(1, int(total // 5))):
        s = summary(load(root, api_key, rate, 5))
        s["slice_end_s"] = 5 * (i + 1)
        slices.append(s)
        normal = not s["refused"] and not s["other_errors"] and s["ok_p99_ms"] <= 2 * unloaded_p99
        if recovered_at is None and normal:
            recovered_at = 5 * (i + 1)
    return {"slices": slices, "normal_within_s": recovered_at}


def together(root: str, critical: str, batch: str, capacity: float, args: argparse.Namespace) -> Any:
    with ThreadPoolExecutor(2) as pool:
        crit = pool.submit(load, root, critical, 0.2 * capacity, args.phase, 2)
        bulk = pool.submit(load, root, batch, args.factor * capacity, args.phase, 2)
        return summary(crit.result()), summary(bulk.result())


def together_with_cpu(
    root: str, proc: Process, critical: str, batch: str, capacity: float, args: argparse.Namespace
) -> Any:
    cpu, began = proc.cpu_seconds(), time.monotonic()
    crit, bulk = together(root, critical, batch, capacity, args)
    bulk["gateway_cpu_share"] = round((proc.cpu_seconds() - cpu) / (time.monotonic() - began), 2)
    return crit, bulk


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("go") is None and Path("/usr/lib/go/bin/go").exists():
        os.environ["PATH"] += os.pathsep + "/usr/lib/go/bin"  # Debian's golang-go, off PATH
    build_loadgen()
    capacity = args.slots / args.latency
    results: dict[str, Any] = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "turnout": metadata.version("turnout"),
        "capacity_rps": capacity,
        "args": vars(args),
    }
    print(f"capacity: {capacity:g} req/s ({args.slots} slots x {args.latency * 1000:g} ms)", flush=True)
    with mock(args.latency, args.slots) as mock_port:
        with gateway(mock_port, enabled=True) as (root, proc):
            standard, critical, batch = key(root, None), key(root, "critical"), key(root, "batch")
            print("unloaded (50% of capacity) ...", flush=True)
            unloaded = summary(load(root, standard, 0.5 * capacity, args.phase, warmup=3))
            print(f"overload ({args.factor:g}x) ...", flush=True)
            over = overload_phase(root, proc, standard, args.factor * capacity, args.phase)
            print("recovery ...", flush=True)
            back = recovery(root, standard, 0.5 * capacity, args.recovery, unloaded["ok_p99_ms"])
            print("critical alone (20%) ...", flush=True)
            crit_alone = summary(load(root, critical, 0.2 * capacity, args.phase, warmup=2))
            print(f"critical (20%) beside batch ({args.factor:g}x) ...", flush=True)
            crit_with, batch_with = together_with_cpu(root, proc, critical, batch, capacity, args)
            state = json.loads(
                subprocess.run(
                    ["curl", "-s", "-H", f"Authorization: Bearer {MASTER_KEY}", root + "/health/ready"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                or "{}"
            ).get("overload")
            results.update(
                unloaded=unloaded,
                overload=over,
                recovery=back,
                critical_alone=crit_alone,
                critical_beside_batch=crit_with,
                batch_beside_critical=batch_with,
                gate_after=state,
                rss_after_mib=round(proc.rss_mib()[0], 1),
            )
        if not args.skip_contrast:
            print(f"without admission control ({args.factor:g}x) ...", flush=True)
            with gateway(mock_port, enabled=False) as (root, proc):
                plain = key(root, None)
                load(root, plain, 0.5 * capacity, 5, warmup=1)
                results["unguarded_overload"] = overload_phase(
                    root, proc, plain, args.factor * capacity, args.phase
                )
    results["goals"] = goals(results, capacity)
    report(results)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"overload-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")
    return 0


def goals(r: dict[str, Any], capacity: float) -> dict[str, Any]:
    over, unloaded = r["overload"], r["unloaded"]
    crit, alone = r["critical_beside_batch"], r["critical_alone"]
    return {
        "goodput >= 90% of capacity": (
            over["ok_rps"],
            round(0.9 * capacity, 1),
            over["ok_rps"] >= 0.9 * capacity,
        ),
        "admitted p99 <= 10x unloaded p99": (
            over["ok_p99_ms"],
            round(10 * unloaded["ok_p99_ms"], 1),
            over["ok_p99_ms"] <= 10 * unloaded["ok_p99_ms"],
        ),
        "refusals p99 < 5 ms": (over["refused_p99_ms"], 5, (over["refused_p99_ms"] or 0) < 5),
        "critical p99 <= 2x its unloaded p99": (
            crit["ok_p99_ms"],
            round(2 * alone["ok_p99_ms"], 1),
            crit["ok_p99_ms"] <= 2 * alone["ok_p99_ms"] and not crit["refused"],
        ),
        "normal again within 30 s": (
            r["recovery"]["normal_within_s"],
            30,
            (r["recovery"]["normal_within_s"] or 999) <= 30,
        ),
    }


def report(r: dict[str, Any]) -> None:
    head = ("phase", "offered req/s", "ok req/s", "ok p50 ms", "ok p99 ms", "503s", "503 p50", "503 p99")
    print("\n| " + " | ".join(head) + " | other errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [
        ("unloaded", r["unloaded"]),
        ("overload", r["overload"]),
        *((f"recovery, to {s['slice_end_s']} s", s) for s in r["recovery"]["slices"]),
        ("critical alone", r["critical_alone"]),
        ("critical beside batch", r["critical_beside_batch"]),
        ("batch beside critical", r["batch_beside_critical"]),
    ]
    if "unguarded_overload" in r:
        rows.append(("overload, no admission control", r["unguarded_overload"]))
    for name, s in rows:
        print(
            f"| {name} | {s['offered']:g} | {s['ok_rps']} | {s['ok_p50_ms']} | {s['ok_p99_ms']} "
            f"| {s['refused']} | {s['refused_p50_ms']} | {s['refused_p99_ms']} | {s['other_errors'] or ''} |"
        )
    print(
        "\ngateway CPU (share of its core, including drain): overload "
        f"{r['overload']['gateway_cpu_share']}, "
        f"batch beside critical {r['batch_beside_critical']['gateway_cpu_share']}"
    )
    lags = {name: s["send_lag_p99_ms"] for name, s in rows}
    print(f"load generator's own send lag, p99 ms: {lags}")
    print(f"RSS peak under overload: {r['overload']['rss_peak_mib']} MiB; after: {r['rss_after_mib']} MiB")
    if "unguarded_overload" in r:
        print(f"RSS peak without admission control: {r['unguarded_overload']['rss_peak_mib']} MiB")
    print(f"gate after the run: {r['gate_after']}")
    print("\n| goal | measured | bound | met |\n|---|---|---|---|")
    for name, (measured, bound, met) in r["goals"].items():
        print(f"| {name} | {measured} | {bound} | {'yes' if met else 'MISS'} |")


if __name__ == "__main__":
    raise SystemExit(main())
