"""Compare candidate server / HTTP-client stacks as bare proxies on the realistic request.

Run: python bench/choices/compare.py   (needs the candidates' packages; see docs/architecture.md)
Each candidate does the same work per request: check the key, parse the JSON body, set the model,
serialise it, call the mock upstream over a keep-alive client and relay the answer (or the stream).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import BENCH_DIR, build_loadgen, free_port, run_load, started, uvicorn_command  # noqa: E402

PY = sys.executable
BODY = BENCH_DIR / "bodies" / "chat_10msg_2tools.json"
STREAM_BODY = BENCH_DIR / "bodies" / "chat_10msg_2tools_stream.json"


def candidates(port: int) -> dict[str, list[str]]:
    granian = [
        PY,
        "-m",
        "granian",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--runtime-threads",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
    ]
    return {
        "aiohttp server + aiohttp client": [PY, "aiohttp_server.py", str(port)],
        "uvicorn raw ASGI + aiohttp client": uvicorn_command(PY, port, "asgi_aiohttp:app"),
        "granian RSGI + aiohttp client": [
            PY,
            "-m",
            "granian",
            "--interface",
            "rsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--no-ws",
            "--log-level",
            "warning",
            "granian_rsgi:app",
        ],
        "granian ASGI + aiohttp client": [
            PY,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--no-ws",
            "--log-level",
            "warning",
            "asgi_aiohttp:app",
        ],
        "uvicorn raw ASGI + httpx client": uvicorn_command(PY, port, "asgi_httpx:app"),
        "uvicorn raw ASGI + httptools client": uvicorn_command(PY, port, "asgi_raw:app"),
        "granian ASGI + httptools client": [*granian, "--interface", "asgi", "asgi_raw:app"],
        "uvicorn Starlette + aiohttp client": uvicorn_command(PY, port, "starlette_app:app"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    loadgen = build_loadgen()
    mock_port = free_port()
    headers = ["Authorization: Bearer sk-bench"]
    rows = []
    env = {"UPSTREAM": f"http://127.0.0.1:{mock_port}", "PATH": "/usr/bin:/bin"}
    with started("mock", [str(loadgen), "mock", "--addr", f"127.0.0.1:{mock_port}"], mock_port, "0"):
        direct = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
        d500 = run_load(direct, BODY, stream=False, rate=500, duration=args.duration)
        dmax = run_load(direct, BODY, stream=False, duration=args.duration)
        dstream = run_load(direct, STREAM_BODY, stream=True, duration=args.duration)
        rows.append(("direct to mock", dmax, dstream, d500, None, None))
        port = free_port()
        for name, cmd in candidates(port).items():
            if args.only and args.only not in name:
                continue
            with started(name.replace(" ", "_"), cmd, port, "1", env=env, cwd=HERE) as proc:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                run_load(url, BODY, stream=False, duration=2, warmup=1, headers=headers)
                cpu0 = proc.cpu_seconds()
                jmax = run_load(url, BODY, stream=False, duration=args.duration, headers=headers)
                cpu_per_req = (proc.cpu_seconds() - cpu0) * 1000 / max(1, int(jmax["ok"]))  # type: ignore[call-overload]
                cpu1 = proc.cpu_seconds()
                smax = run_load(url, STREAM_BODY, stream=True, duration=args.duration, headers=headers)
                cpu_per_stream = (proc.cpu_seconds() - cpu1) * 1000 / max(1, int(smax["ok"]))  # type: ignore[call-overload]
                o500 = run_load(url, BODY, stream=False, rate=500, duration=args.duration, headers=headers)
                rows.append((name, jmax, smax, o500, (cpu_per_req, cpu_per_stream), proc.rss_mib()[1]))
    print(
        "| stack | max json req/s | max stream req/s | p50 / p99 ms @500 (added) "
        "| CPU ms/req json / stream | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|")
    base = d500["latency_ms"]  # type: ignore[index]
    for name, jmax, smax, o500, cpu, rss in rows:
        lat = o500["latency_ms"]
        added = f"{lat['p50']:.2f} / {lat['p99']:.2f}"
        if cpu is not None:
            added += f" (+{lat['p50'] - base['p50']:.2f} / +{lat['p99'] - base['p99']:.2f})"
        errs = int(jmax["errors"]) + int(smax["errors"]) + int(o500["errors"])
        print(
            f"| {name} | {jmax['achieved_rps']:.0f} | {smax['achieved_rps']:.0f} | {added} | "
            f"{'' if cpu is None else f'{cpu[0]:.3f} / {cpu[1]:.3f}'} | "
            f"{'' if rss is None else f'{rss:.0f}'} |" + (f" errors={errs}" if errs else "")
        )


if __name__ == "__main__":
    main()
