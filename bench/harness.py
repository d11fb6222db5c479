"""Benchmark plumbing: build the Go load generator, start pinned processes, read their CPU and memory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN_SRC = BENCH_DIR / "loadgen"
BUILD_DIR = BENCH_DIR / ".build"
LOADGEN_BIN = BUILD_DIR / "turnout-loadgen"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def ensure_go() -> str:
    """Return the go binary, installing Debian's golang-go package if it is missing."""
    go = shutil.which("go")
    if go:
        return go
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("the benchmark needs Go (Debian/Ubuntu: apt-get install golang-go)")
    print("installing golang-go from Debian's packages ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "golang-go"], check=True, env=env, stdout=subprocess.DEVNULL
    )
    go = shutil.which("go")
    if not go:
        raise SystemExit("golang-go installed but 'go' is not on PATH")
    return go


def build_loadgen() -> Path:
    """Compile the load generator and mock upstream (stdlib-only Go) unless it is up to date."""
    sources = [*LOADGEN_SRC.glob("*.go"), LOADGEN_SRC / "go.mod"]
    newest = max(p.stat().st_mtime for p in sources)
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= newest:
        return LOADGEN_BIN
    go = ensure_go()
    BUILD_DIR.mkdir(exist_ok=True)
    env = dict(os.environ, GOCACHE=str(BUILD_DIR / "gocache"), GOFLAGS="-mod=mod", CGO_ENABLED="0")
    subprocess.run([go, "build", "-o", str(LOADGEN_BIN), "."], cwd=LOADGEN_SRC, check=True, env=env)
    return LOADGEN_BIN


def uvicorn_command(python: str, port: int, app: str) -> list[str]:
    """uvicorn as the reference proxies run it: httptools, uvloop, no logging or proxy headers."""
    return [
        python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
        "--http", "httptools", "--no-access-log", "--log-level", "warning", "--no-proxy-headers",
        "--no-server-header", "--no-date-header", app,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (workers)."""
        total = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory in MiB, summed over the process tree."""
        cur = peak = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        cur += int(line.split()[1]) / 1024
                    elif line.startswith("VmHWM:"):
                        peak += int(line.split()[1]) / 1024
        return cur, peak


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            for kid in kids:
                out.append(int(kid))
                out.extend(_children(int(kid)))
    return out


@contextlib.contextmanager
def started(
    name: str,
    cmd: Sequence[str],
    port: int,
    cpus: str | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path = BUILD_DIR,
    timeout: float = 60.0,
) -> Iterator[Process]:
    """Start `cmd` pinned to `cpus`, wait until it listens on `port`, stop it afterwards."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full = ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            full, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    try:
        wait_for_port(port, proc, timeout)
        yield Process(name, proc, log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_load(
    url: str,
    body: Path,
    *,
    stream: bool,
    rate: float = 0,
    concurrency: int = 32,
    duration: float = 10,
    warmup: float = 2,
    headers: Sequence[str] = (),
    cpus: str | None = "0",
    drain: float = 15,
    max_in_flight: int = 20000,
    request_timeout: float = 30,
    keys: Path | None = None,
) -> dict[str, object]:
    """Drive `url` with the load generator and return its JSON report. With `keys` (a file of
    bearer keys, one a line) the requests take the keys in turn.

    A target that cannot keep up is bounded: in the open loop, once `max_in_flight` requests are
    outstanding new ones count as errors, and answers later than `drain` after the end are dropped.
    """
    cmd = [
        str(LOADGEN_BIN),
        "load",
        "--url",
        url,
        "--body",
        str(body),
        "--duration",
        f"{duration}s",
        "--warmup",
        f"{warmup}s",
        "--drain",
        f"{drain}s",
        "--max-in-flight",
        str(max_in_flight),
        "--timeout",
        f"{request_timeout}s",
    ]
    if stream:
        cmd.append("--stream")
    cmd += ["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
    for h in headers:
        cmd += ["--header", h]
    if keys is not None:
        cmd += ["--keys", str(keys)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    out = subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        text=True,
        timeout=duration + warmup + drain + request_timeout + 60,
    )
    report: dict[str, object] = json.loads(out.stdout)
    return report
