"""The benchmark's targets: the mock upstream, and each gateway started in front of it.

Every target is a context manager yielding an `Endpoint`; gateways run alone on core 1, the mock
upstream (and the load generator) on core 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness import BENCH_DIR, BUILD_DIR, LOADGEN_BIN, Process, free_port, started, uvicorn_command

LOAD_CPUS = "0"
GATEWAY_CPUS = "1"
MASTER_KEY = "sk-bench-master-LowSylie4eMHw9XFnUjdqM9vLC-g77yLIhm9HYl7JBc"
MODEL = "bench-model"
CHAT_PATH = "/v1/chat/completions"

LITELLM_VENV = BUILD_DIR / "litellm-venv"
LITELLM_VERSION = "1.109.1"
# 1.109.1 pins releases of these that the package index lacks; any release of them will do here.
LITELLM_RELAXED = ("certifi", "litellm-proxy-extras", "litellm-enterprise")
# Never fetch anything at start-up (model cost map, beta headers, presets ...), send no telemetry.
LITELLM_OFFLINE = {
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
}
# Run inside the LiteLLM venv: print litellm's own and its [proxy] requirements, relaxed.
_LITELLM_REQUIREMENTS = """
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
out = set()
for line in requires("litellm") or []:
    req = Requirement(line)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", "proxy")):
        continue
    req.marker = None
    if req.name in sys.argv[1:]:
        req.specifier = SpecifierSet()
    out.add(str(req))
print("\\n".join(sorted(out)))
"""


@dataclass
class Options:
    """How turnout targets run (set from the command line): the master key instead of the
    accounted virtual key (no budgets, no billing: to measure what accounting costs), and Redis
    for budgets shared across instances."""

    master_key: bool = False
    redis_url: str | None = None
    baseline: str | None = None  # a git ref: `turnout-baseline` is turnout as it was there
    # YAML added to the baseline's configuration; without `baseline`, `turnout-baseline` is this
    # checkout configured so (`--baseline-config 'metrics: {enabled: false}'`: what metrics cost)
    baseline_config: str | None = None
    # run turnout under this command (bench/instructions.py: valgrind), waiting this long for it
    wrapper: tuple[str, ...] = ()
    start_timeout: float = 60.0


OPTIONS = Options()


def ensure_baseline(ref: str) -> tuple[Path, str]:
    """turnout as committed at `ref`, installed (not editable) into its own virtualenv under
    bench/.build/baseline-<commit>/ (kept for later runs): its `turnout` command and a label."""
    repo = BENCH_DIR.parent
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    home = BUILD_DIR / f"baseline-{sha[:12]}"
    binary = home / "venv" / "bin" / "turnout"
    if not binary.exists():
        print(f"installing turnout at {ref} ({sha[:12]}) as the baseline ...", flush=True)
        shutil.rmtree(home, ignore_errors=True)
        (home / "src").mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", sha], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(home / "src")], input=archive.stdout, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
        pip = [
            str(home / "venv" / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
        ]
        subprocess.run([*pip, str(home / "src")], check=True)
    return binary, f"{ref} ({sha[:12]})"


@dataclass(frozen=True)
class Endpoint:
    """Where to send the load, and the gateway process to watch (None when calling the mock)."""

    name: str
    url: str
    process: Process | None
    version: str
    key: str = MASTER_KEY  # what the load authenticates with


# A target starts in front of the mock upstream on the given port, logging to bench/.build/<log>.log.
Target = Callable[[int, str], AbstractContextManager[Endpoint]]


@contextlib.contextmanager
def mock_upstream(chunks: int = 20) -> Iterator[int]:
    """Start the Go mock upstream on the load generator's core; yield its port."""
    port = free_port()
    cmd = [str(LOADGEN_BIN), "mock", "--addr", f"127.0.0.1:{port}", "--chunks", str(chunks)]
    with started("mock", cmd, port, LOAD_CPUS):
        yield port


@contextlib.contextmanager
def direct(mock_port: int, log: str) -> Iterator[Endpoint]:
    """The mock itself: the physical limit of this machine and load generator."""
    yield Endpoint("direct", f"http://127.0.0.1:{mock_port}{CHAT_PATH}", None, "")


@contextlib.contextmanager
def bare(mock_port: int, log: str) -> Iterator[Endpoint]:
    """A bare ~100-line Python proxy (bench/choices/asgi_raw.py: raw ASGI on uvicorn, a minimal
    httptools client, key check, parse + re-serialise): the yardstick for what any Python gateway
    gets on this machine, measured in the same conditions as turnout."""
    port = free_port()
    cmd = uvicorn_command(sys.executable, port, "asgi_raw:app")
    env = {**_clean_env(), "UPSTREAM": f"http://127.0.0.1:{mock_port}", "BENCH_KEY": MASTER_KEY}
    with started(log, cmd, port, GATEWAY_CPUS, env=env, cwd=BENCH_DIR / "choices") as proc:
        yield Endpoint("bare", f"http://127.0.0.1:{port}{CHAT_PATH}", proc, "reference")


# The mock's model is priced like gpt-4o, so every request's cost is computed and journaled.
PRICE = "price: {{input: '2.50', output: '10.00'}}"  # (doubled braces: the text is .format()ted)
ONE_DEPLOYMENT = (
    "providers:\n"
    "  mock: {{type: openai_compatible, base_url: http://127.0.0.1:{port}/v1}}\n"
    "models:\n"
    f"  {MODEL}: {{{{provider: mock, model: {MODEL}, {PRICE}}}}}\n"
)
# Three deployments (three providers at the same mock) behind one weighted alias: what routing costs.
THREE_DEPLOYMENTS = (
    "providers:\n"
    "  mock-a: {{type: openai_compatible, base_url: http://127.0.0.1:{port}/v1}}\n"
    "  mock-b: {{type: openai_compatible, base_url: http://127.0.0.1:{port}/v1}}\n"
    "  mock-c: {{type: openai_compatible, base_url: http://127.0.0.1:{port}/v1}}\n"
    "models:\n"
    f"  {MODEL}:\n"
    "    strategy: weighted\n"
    "    targets:\n"
    f"      - {{{{provider: mock-a, model: {MODEL}, weight: 3, {PRICE}}}}}\n"
    f"      - {{{{provider: mock-b, model: {MODEL}, weight: 2, {PRICE}}}}}\n"
    f"      - {{{{provider: mock-c, model: {MODEL}, weight: 1, {PRICE}}}}}\n"
)

# One deployment, every request also mirrored (share 1) to a second provider at the same mock: what
# a shadow costs the client's request (routing/mirror.py), under a rehearsal budget never reached.
MIRRORED = (
    "providers:\n"
    "  mock: {{type: openai_compatible, base_url: http://127.0.0.1:{port}/v1}}\n"
    "  candidate: {{type: openai_compatible, base_url: http://127.0.0.1:{port}/v1}}\n"
    "models:\n"
    f"  {MODEL}:\n"
    "    provider: mock\n"
    f"    model: {MODEL}\n"
    f"    {PRICE}\n"
    "    mirror:\n"
    f"      to: {{{{provider: candidate, model: {MODEL}, {PRICE}}}}}\n"
    "      share: 1.0\n"
    "      budget: {{limit: '1000000', period: never}}\n"
    "      concurrency: 512\n"
)

# The translated path: the same OpenAI-format load, to an Anthropic Messages API upstream (the mock's
# /v1/messages), so turnout translates the request, the answer and the stream.
ANTHROPIC_KEY_ENV = "BENCH_ANTHROPIC_API_KEY"
ANTHROPIC_DEPLOYMENT = (
    "providers:\n"
    "  mock-anthropic:\n"
    "    type: anthropic\n"
    "    base_url: http://127.0.0.1:{port}/v1\n"
    f"    api_key: 'env:{ANTHROPIC_KEY_ENV}'\n"
    "models:\n"
    f"  {MODEL}: {{{{provider: mock-anthropic, model: {MODEL}, {PRICE}}}}}\n"
)


@contextlib.contextmanager
def _turnout(
    name: str,
    routing: str,
    mock_port: int,
    log: str,
    extra_env: dict[str, str] | None = None,
    baseline: bool = False,
    limited: bool = False,
) -> Iterator[Endpoint]:
    """The project's gateway, from the virtualenv running this script (or, for the baseline, as
    committed at `--baseline`), with a fresh data dir."""
    exe = Path(sys.executable).parent / "turnout"
    binary = str(exe) if exe.exists() else shutil.which("turnout")
    version = metadata.version("turnout")
    if baseline:
        if OPTIONS.baseline is None:
            raise RuntimeError("turnout-baseline needs --baseline REF")
        built, version = ensure_baseline(OPTIONS.baseline)
        binary = str(built)
    if name == "turnout-baseline" and OPTIONS.baseline_config:
        version += f" with {OPTIONS.baseline_config}"
    if not binary:
        raise RuntimeError("the 'turnout' command is not installed in this Python environment")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="turnout-bench-") as tmp:
        config = Path(tmp) / "turnout.yaml"
        redis = f", redis_url: '{OPTIONS.redis_url}'" if OPTIONS.redis_url else ""
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {port}}}\n"
            f"storage: {{data_dir: {tmp}/data{redis}}}\n" + routing.format(port=mock_port)
        )
        env = {**_clean_env(), "TURNOUT_MASTER_KEY": MASTER_KEY, **(extra_env or {})}
        cmd = [*OPTIONS.wrapper, binary, "serve", "--config", str(config)]
        timeout = OPTIONS.start_timeout
        with started(log, cmd, port, GATEWAY_CPUS, env=env, cwd=Path(tmp), timeout=timeout) as proc:
            root = f"http://127.0.0.1:{port}"
            key = MASTER_KEY if OPTIONS.master_key else accounted_key(root, limited=limited)
            yield Endpoint(name, f"http://127.0.0.1:{port}{CHAT_PATH}", proc, version, key)


def _admin(root: str, path: str, body: dict[str, object], method: str = "POST") -> dict[str, object]:
    request = urllib.request.Request(
        root + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


# Rate limits far above what a run sends: every limit kind checked and counted on every request.
UNREACHED_LIMITS = {"rpm": 10**9, "tpm": 10**12, "rpd": 10**11, "parallel": 10**6}


def accounted_key(root: str, *, limited: bool = False) -> str:
    """A virtual key that exercises every accounting step on each request: a user in a team on a
    billing plan (a markup), with a budget of its own, a daily team budget with a soft limit and a
    monthly user budget, all far above what a run spends. The ledger journal is always on.
    `limited`: the key, its team and its user also have every rate limit (rpm, tpm, rpd,
    parallel), far above what a run sends."""
    plan = _admin(root, "/admin/plans", {"name": "bench", "markup": "1.2"})
    team = _admin(root, "/admin/teams", {"name": "bench"})["id"]
    _admin(root, f"/admin/teams/{team}/billing", {"plan_id": plan["id"]})
    user = _admin(root, "/admin/users", {"email": "bench@example.com"})["id"]
    _admin(root, f"/admin/teams/{team}/members", {"user_id": user, "role": "member"})
    budget = {"limit": "1000000", "soft_limit": "900000"}
    _admin(root, "/admin/budgets", {"scope": "team", "subject_id": team, "period": "daily", **budget})
    _admin(root, "/admin/budgets", {"scope": "user", "subject_id": user, "period": "monthly", **budget})
    body: dict[str, object] = {"name": "bench", "team_id": team, "user_id": user, "max_budget": "1000000"}
    if limited:
        _admin(root, f"/admin/teams/{team}", {"limits": UNREACHED_LIMITS}, "PATCH")
        _admin(root, f"/admin/users/{user}", {"limits": UNREACHED_LIMITS}, "PATCH")
        body["limits"] = UNREACHED_LIMITS
    key = _admin(root, "/admin/keys", body)
    return str(key["key"])


def spread_keys(endpoint: Endpoint, count: int) -> list[str]:
    """`count` more keys on the gateway, each in a team of its own (no budgets): traffic from many
    keys, whose ledger rows add to cells of their own in the running totals."""
    root = endpoint.url.removesuffix(CHAT_PATH)
    keys = []
    for i in range(count):
        team = _admin(root, "/admin/teams", {"name": f"bench-spread-{i}"})["id"]
        keys.append(str(_admin(root, "/admin/keys", {"name": f"bench-spread-{i}", "team_id": team})["key"]))
    return keys


def turnout(mock_port: int, log: str) -> AbstractContextManager[Endpoint]:
    """turnout with one deployment behind the model."""
    return _turnout("turnout", ONE_DEPLOYMENT, mock_port, log)


def turnout_limited(mock_port: int, log: str) -> AbstractContextManager[Endpoint]:
    """turnout with one deployment, the accounted key and its team and user also rate-limited
    (every kind of limit, never reached): what the limits cost a request."""
    return _turnout("turnout-limited", ONE_DEPLOYMENT, mock_port, log, limited=True)


def turnout_baseline(mock_port: int, log: str) -> AbstractContextManager[Endpoint]:
    """turnout as committed at `--baseline` (e.g. main), or this checkout with `--baseline-config`
    added to its configuration, one deployment: the same run's yardstick for what a change costs."""
    routing = ONE_DEPLOYMENT + (OPTIONS.baseline_config or "").replace("{", "{{").replace("}", "}}") + "\n"
    return _turnout("turnout-baseline", routing, mock_port, log, baseline=OPTIONS.baseline is not None)


def turnout_weighted(mock_port: int, log: str) -> AbstractContextManager[Endpoint]:
    """turnout with three deployments behind the model, weighted 3:2:1."""
    return _turnout("turnout-3", THREE_DEPLOYMENTS, mock_port, log)


def turnout_mirrored(mock_port: int, log: str) -> AbstractContextManager[Endpoint]:
    """turnout with one deployment, every request also shadowed to a candidate at the same mock."""
    return _turnout("turnout-mirrored", MIRRORED, mock_port, log)


def turnout_anthropic(mock_port: int, log: str) -> AbstractContextManager[Endpoint]:
    """turnout with one Anthropic deployment behind the model: OpenAI format in, Anthropic's out."""
    env = {ANTHROPIC_KEY_ENV: "sk-ant-bench"}
    return _turnout("turnout-anthropic", ANTHROPIC_DEPLOYMENT, mock_port, log, env)


@contextlib.contextmanager
def litellm(mock_port: int, log: str) -> Iterator[Endpoint]:
    """LiteLLM's proxy: 1 worker, master key, no database, offline, on 127.0.0.1 only."""
    venv, version = ensure_litellm()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="litellm-bench-") as tmp:
        config = Path(tmp) / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: http://127.0.0.1:{mock_port}/v1\n"
            "      api_key: sk-mock\n"
            "general_settings:\n"
            f"  master_key: {MASTER_KEY}\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
        )
        env = {**_clean_env(), **LITELLM_OFFLINE}
        cmd = [
            str(venv / "bin" / "litellm"),
            *("--config", str(config), "--host", "127.0.0.1", "--port", str(port)),
            *("--num_workers", "1", "--telemetry", "False"),
        ]
        with started(log, cmd, port, GATEWAY_CPUS, env=env, cwd=Path(tmp), timeout=180) as proc:
            yield Endpoint("litellm", f"http://127.0.0.1:{port}{CHAT_PATH}", proc, version)


TARGETS: dict[str, Target] = {
    "direct": direct,
    "bare": bare,
    "turnout": turnout,
    "turnout-baseline": turnout_baseline,
    "turnout-limited": turnout_limited,
    "turnout-3": turnout_weighted,
    "turnout-anthropic": turnout_anthropic,
    "turnout-mirrored": turnout_mirrored,
    "litellm": litellm,
}


def _clean_env() -> dict[str, str]:
    """This environment without anything that would point a gateway at a database or a proxy."""
    drop = {"DATABASE_URL", "REDIS_URL", "TURNOUT_CONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
    return {k: v for k, v in os.environ.items() if k.upper() not in drop}


def ensure_litellm() -> tuple[Path, str]:
    """Install LiteLLM's proxy into its own virtualenv under bench/.build once; return (venv, version).

    First litellm 1.109.1 with --no-deps plus its requirements with three unavailable pins relaxed,
    else whatever `pip install 'litellm[proxy]'` resolves to.
    """
    marker = LITELLM_VENV / "bench-installed"
    if marker.exists():
        return LITELLM_VENV, marker.read_text().strip()
    log = BUILD_DIR / "litellm-install.log"
    print(f"installing LiteLLM into {LITELLM_VENV} (log: {log}) ...", flush=True)
    attempts: list[tuple[str, Callable[[Path], None]]] = [
        (f"litellm {LITELLM_VERSION} with relaxed pins", _install_pinned),
        ("litellm[proxy] as resolved", lambda py: _pip(py, "litellm[proxy]")),
    ]
    for label, install in attempts:
        shutil.rmtree(LITELLM_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        python = LITELLM_VENV / "bin" / "python"
        try:
            install(python)
            _run(python, "-c", "import litellm.proxy.proxy_server")
        except subprocess.CalledProcessError as exc:
            print(f"  {label}: failed (exit {exc.returncode}), see {log}", flush=True)
            continue
        version = _run(python, "-c", "import importlib.metadata as m; print(m.version('litellm'))").strip()
        marker.write_text(version + "\n")
        print(f"  installed litellm {version} ({label})", flush=True)
        return LITELLM_VENV, version
    raise RuntimeError(f"could not install LiteLLM, see {log}")


def _install_pinned(python: Path) -> None:
    _pip(python, "--no-deps", f"litellm=={LITELLM_VERSION}", "packaging")
    reqs = _run(python, "-c", _LITELLM_REQUIREMENTS, *LITELLM_RELAXED).splitlines()
    _pip(python, *reqs)


def _pip(python: Path, *args: str) -> None:
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args)


def _run(python: Path, *args: str) -> str:
    """Run the venv's python, appending its output to the install log; return its stdout."""
    with open(BUILD_DIR / "litellm-install.log", "a") as log:
        log.write(f"$ {python} {' '.join(args)[:200]}\n")
        log.flush()
        env = {**_clean_env(), **LITELLM_OFFLINE}
        done = subprocess.run(
            [str(python), *args], check=True, stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        log.write(done.stdout)
    return done.stdout
