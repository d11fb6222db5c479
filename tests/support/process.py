"""`turnout serve` as a real process for tests: started on a free port, its banner read, its
stderr drained, stopped by any signal."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

TURNOUT = str(Path(sys.executable).with_name("turnout"))
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int, banner: str, drain: threading.Thread) -> None:
        self.proc = proc
        self.port = port
        self.banner = banner
        self._drain = drain

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process, wait for it, close its pipe; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self._drain.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _discard(lines: Iterator[str]) -> None:
    for _ in lines:
        pass


def start_serve(config: Path, env: dict[str, str]) -> Served:
    return start_process([TURNOUT, "serve", "--config", str(config), "--port", "0"], env)


def start_process(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Served:
    """Run `argv` (a `turnout serve` command line listening on 127.0.0.1) until it listens."""
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    banner: list[str] = []
    for line in proc.stderr:  # the banner is printed once the server listens
        banner.append(line)
        match = LISTENING.search(line)
        if match:
            rest = proc.stderr
            # read the remaining banner lines (they follow immediately) without blocking forever
            for _ in range(8):
                more = rest.readline()
                banner.append(more)
                if more.startswith(("master key:", "Only its hash")):
                    break
            drain = threading.Thread(target=_discard, args=(rest,), daemon=True)  # keep the pipe empty
            drain.start()
            return Served(proc, int(match.group(1)), "".join(banner), drain)
    proc.wait(10)
    proc.stderr.close()
    raise AssertionError("turnout serve exited before listening:\n" + "".join(banner))
