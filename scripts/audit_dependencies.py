"""Audit the installed environment's packages against an advisory service with pip-audit (the
`== pip-audit` step of scripts/test).

The first service that answers a probe within a few seconds is used: OSV, then PyPI's JSON API.
When none answers (a machine without internet, a package mirror without the JSON API), or the
audit cannot finish, one line says it was skipped and why, and the step passes. When it finishes
and finds a vulnerability not in the ignore list, the report is printed and the step fails.

The ignore list (scripts/pip-audit-ignore.txt): one advisory id a line, then the reason it does not
apply to turnout; `#` starts a comment. An entry without a reason is an error.

    .venv/bin/python scripts/audit_dependencies.py [--service auto|osv|pypi] [--osv-url URL]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
OSV_URL = "https://api.osv.dev/v1/query"
PYPI_URL = "https://pypi.org/pypi"
PROBE_TIMEOUT = 5.0  # seconds, for each probe
AUDIT_TIMEOUT = 300  # seconds, for the whole audit (pip-audit's own per-request timeout is 10 s)
NAMES = {"osv": "OSV", "pypi": "PyPI's JSON API"}


def ignored(path: Path) -> list[str]:
    """The advisory ids of the ignore list; exits if an entry gives no reason."""
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), 1) if path.exists() else ():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        advisory, _, reason = entry.partition(" ")
        if not reason.strip():
            sys.exit(f"{path.name}:{number}: '{advisory}' needs a reason after it (why it does not apply)")
        ids.append(advisory)
    return ids


def probe(service: str, osv_url: str) -> str | None:
    """None if the service answers as it should; else why not, in a few words."""
    pip = version("pip")
    if service == "osv":
        body = json.dumps({"package": {"name": "pip", "ecosystem": "PyPI"}, "version": pip}).encode()
        request = urllib.request.Request(osv_url, data=body, headers={"Content-Type": "application/json"})
    else:
        request = urllib.request.Request(f"{PYPI_URL}/pip/{pip}/json")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return str(getattr(error, "reason", None) or error) or type(error).__name__
    if service == "pypi" and "vulnerabilities" not in answer:
        return "no vulnerability data in its answer"
    return None


def audit(service: str, osv_url: str, ignore: list[str], cache_dir: str | None) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [
            str(Path(sys.executable).with_name("pip-audit")),
            "--vulnerability-service", service,
            "--skip-editable",  # turnout itself is not on PyPI
            "--progress-spinner", "off",
            "--timeout", "10",
            "--format", "json",
            "--output", str(report),
        ]  # fmt: skip
        if service == "osv":
            command += ["--osv-url", osv_url]
        if cache_dir:
            command += ["--cache-dir", cache_dir]
        for advisory in ignore:
            command += ["--ignore-vuln", advisory]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=AUDIT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            print(f"pip-audit skipped: the audit against {service} did not finish in {AUDIT_TIMEOUT} s")
            return 0
        if not report.exists():
            reason = (run.stderr.strip().splitlines() or ["no report written"])[-1]
            print(f"pip-audit skipped: the audit against {service} could not finish ({reason[:200]})")
            return 0
        result = json.loads(report.read_text())
    dependencies = result.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    if dependencies and not audited:
        print(f"pip-audit skipped: {service} knows none of the {len(dependencies)} installed packages")
        return 0
    found = [(d, v) for d in audited for v in d.get("vulns", [])]
    if not found:
        print(f"pip-audit: no known vulnerabilities in {len(audited)} packages ({service})")
        return 0
    print(f"pip-audit: {len(found)} known vulnerabilities ({service}):")
    for dependency, vuln in found:
        fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
        aliases = ", ".join(vuln.get("aliases", []))
        print(f"  {dependency['name']} {dependency['version']}: {vuln['id']} ({aliases}) fixed in {fixed}")
        print(f"    {vuln.get('description', '')[:300]}")
    print(f"Upgrade, or list the id in {HERE / 'pip-audit-ignore.txt'} with why it does not apply.")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", choices=["auto", "osv", "pypi"], default="auto")
    parser.add_argument("--osv-url", default=OSV_URL)
    parser.add_argument("--ignore-file", type=Path, default=HERE / "pip-audit-ignore.txt")
    parser.add_argument("--cache-dir")
    args = parser.parse_args()
    ignore = ignored(args.ignore_file)
    services = ["osv", "pypi"] if args.service == "auto" else [args.service]
    reasons = []
    for service in services:
        reason = probe(service, args.osv_url)
        if reason is None:
            return audit(service, args.osv_url, ignore, args.cache_dir)
        reasons.append(f"{NAMES[service]}: {reason}")
    print(f"pip-audit skipped: no advisory service reachable ({'; '.join(reasons)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
