"""scripts/audit_dependencies.py, the `== pip-audit` step of scripts/test, against an advisory
service on 127.0.0.1 that speaks OSV's query API: a known vulnerability fails the step with its
report, one on the ignore list (with its reason) does not, and a service that cannot be reached
skips the step with one line saying why, never failing or hanging it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "audit_dependencies.py"
ADVISORY = "GHSA-tuno-0000-0001"
VULNERABLE = "orjson"  # installed with turnout: the made-up advisory is about it


class Advisories(BaseHTTPRequestHandler):
    """OSV's POST /v1/query: one made-up advisory, for every version of one package."""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        package = query["package"]["name"]
        vulns = []
        if package == VULNERABLE:
            affected = {
                "package": {"name": VULNERABLE, "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}],
            }
            vulns = [
                {"id": ADVISORY, "aliases": ["CVE-2099-0001"], "summary": "made up", "affected": [affected]}
            ]
        body = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Advisories)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()
    thread.join(10)


def audit(tmp_path: Path, osv_url: str, ignore: str = "") -> subprocess.CompletedProcess[str]:
    ignore_file = tmp_path / "ignore.txt"
    ignore_file.write_text(ignore)
    command = [sys.executable, str(SCRIPT), "--service", "osv", "--osv-url", osv_url]
    command += ["--ignore-file", str(ignore_file), "--cache-dir", str(tmp_path / "cache")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_known_vulnerability_fails_the_step_with_its_report(tmp_path: Path, osv_url: str) -> None:
    run = audit(tmp_path, osv_url)
    assert run.returncode == 1, run.stdout + run.stderr
    assert ADVISORY in run.stdout and "CVE-2099-0001" in run.stdout
    assert f"{VULNERABLE} " in run.stdout and "fixed in 999.0" in run.stdout


def test_an_advisory_on_the_ignore_list_with_its_reason_passes(tmp_path: Path, osv_url: str) -> None:
    run = audit(tmp_path, osv_url, f"# comment\n{ADVISORY}  only affects a function turnout never calls\n")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no known vulnerabilities" in run.stdout


def test_an_ignore_entry_without_a_reason_is_an_error(tmp_path: Path, osv_url: str) -> None:
    run = audit(tmp_path, osv_url, f"{ADVISORY}\n")
    assert run.returncode != 0
    assert "needs a reason" in run.stderr


def test_an_unreachable_service_skips_the_step_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    run = audit(tmp_path, f"http://127.0.0.1:{port}/v1/query")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("pip-audit skipped: no advisory service reachable (OSV: ")
    assert len(run.stdout.strip().splitlines()) == 1
