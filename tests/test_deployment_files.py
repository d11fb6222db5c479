"""The files that run turnout in production (Dockerfile, deploy/docker-compose.yml with HAProxy,
the Helm chart, the systemd unit, docs/deployment.md) work, checked without a container engine:
the image is built by running the Dockerfile's own commands in a fresh folder and started as its
CMD starts it; the chart is rendered and its manifests validated against Kubernetes' schemas; the
compose topology is started as two real gateways on PostgreSQL and Redis; the unit is verified
and its ExecStart / ExecReload run."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml

from turnout import __version__
from turnout.config.settings import Settings
from turnout.providers.config_loader import build_settings, load_settings

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.dockerfile import BASE_PATH, Builder, Image, ignore_patterns, ignored
from support.helm import TemplateError, render_chart, render_manifests
from support.process import Served, start_process

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "turnout"
# building the image (every dependency's wheel, then a fresh venv) takes about a minute here
pytestmark = pytest.mark.timeout(600)
KUBERNETES = "1.30"  # the oldest Kubernetes the chart is validated for
MASTER = "sk-deploy-master-Zq3RkW7u1PnB8xVt5YcL0aHs4GdJ6mEf9TiOoUyNrXw"
HASH_SECRET = "5f" * 32
REDIS_HOST = os.environ.get("TURNOUT_TEST_REDIS_HOST", "127.0.0.1")
REFERENCE = re.compile(r"\benv:([A-Z_][A-Z0-9_]*)")


def references(text: str) -> set[str]:
    """Environment variables a configuration refers to (env:NAME)."""
    return set(REFERENCE.findall(text))


def loaded(doc: Any, environ: dict[str, str]) -> Settings:
    return build_settings(doc, environ, source="test")


# ------------------------------------------------------------------ the image, built and started


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The runtime stage, built by running the Dockerfile's commands (a fresh venv from the wheels
    the build stage made)."""
    return Builder(ROOT, tmp_path_factory.mktemp("image")).build(ROOT / "Dockerfile")


def image_environment(image: Image) -> dict[str, str]:
    env = {k: image.mapped(v) if k != "PATH" else v for k, v in image.env.items()}
    env["PATH"] = ":".join(image.mapped(p) for p in image.env["PATH"].split(":"))
    return {**env, "HOME": str(image.host(image.workdir))}


@pytest.fixture(scope="module")
def served_image(image: Image) -> Iterator[Served]:
    """The gateway as the image's ENTRYPOINT + CMD start it, on loopback and a free port."""
    command = list(image.command)
    assert command[:2] == ["turnout", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "4000" and image.exposed == ["4000"]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = "0"
    image.host(image.workdir).mkdir(parents=True, exist_ok=True)  # useradd --create-home does this
    served = start_process(command, image_environment(image), cwd=image.host(image.workdir))
    yield served
    served.stop(signal.SIGKILL)


def healthcheck(image: Image, port: int) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("127.0.0.1:4000", f"127.0.0.1:{port}") for a in image.healthcheck]
    return subprocess.run(argv, env=image_environment(image), capture_output=True, text=True, timeout=30)


def test_the_build_context_holds_only_what_the_image_is_built_from() -> None:
    patterns = ignore_patterns(ROOT)
    kept = {p.name for p in ROOT.iterdir() if not ignored(p.name, patterns)}
    assert kept == {"pyproject.toml", "README.md", "LICENSE", "src"}
    assert ignored("src/turnout/__pycache__/app.cpython-311.pyc", patterns)
    assert not ignored("src/turnout/config/prices.yaml", patterns)


def test_the_image_runs_a_python_turnout_supports() -> None:
    version = re.search(r"^ARG PYTHON_VERSION=(\d+)\.(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    required = re.search(
        r'^requires-python = ">=(\d+)\.(\d+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE
    )
    assert version is not None and required is not None
    assert tuple(map(int, version.groups())) >= tuple(map(int, required.groups()))


def test_the_image_runs_as_its_own_user_with_the_data_directory_on_a_volume(image: Image) -> None:
    assert image.user == "turnout" and image.users_created == ["turnout"]
    assert image.env["TURNOUT_DATA_DIR"] == "/var/lib/turnout" == image.workdir
    assert image.volumes == ["/var/lib/turnout"]
    assert image.stop_signal == "SIGTERM"
    installed = image.host("/opt/turnout/bin/turnout")
    version = subprocess.run([installed, "--version"], capture_output=True, text=True, check=True).stdout
    assert __version__ in version


def test_the_image_serves_and_its_healthcheck_reads_readiness(image: Image, served_image: Served) -> None:
    root = f"http://127.0.0.1:{served_image.port}"
    assert httpx.get(root + "/health/ready").json()["status"] == "ready"
    checked = healthcheck(image, served_image.port)
    assert checked.returncode == 0, checked.stderr
    assert "/health/ready" in " ".join(image.healthcheck)
    # the state is written to the volume: the ledger's database, journal and key-hash secret
    data = image.host("/var/lib/turnout")
    assert {"turnout.db", "journal", "key-hash.secret"} <= {p.name for p in data.iterdir()}
    assert "A master key was generated" in served_image.banner  # printed once, to the container's log


def test_the_healthcheck_fails_when_nothing_answers(image: Image) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        assert healthcheck(image, port).returncode != 0


def test_docker_builds_and_runs_the_image_when_a_daemon_is_here(tmp_path: Path) -> None:
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"no docker here ({error}); the image is checked by its commands above")
    if info.returncode != 0:
        pytest.skip(
            "no docker daemon answers (`docker info` fails); the image is checked by its commands above"
        )
    tag = f"turnout-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    try:
        ran = subprocess.run(
            ["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, check=True
        )
        assert __version__ in ran.stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


# ------------------------------------------------------------------ docker compose + HAProxy


def compose_variables() -> dict[str, str]:
    """deploy/env.example, filled in as a user would."""
    lines = (DEPLOY / "env.example").read_text().splitlines()
    names = [line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")]
    values = {"TURNOUT_MASTER_KEY": MASTER, "TURNOUT_KEY_HASH_SECRET": HASH_SECRET}
    return {name: values.get(name, f"value-of-{name.lower()}") for name in names}


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if variables.get(name):
            return variables[name]
        assert op != ":?", f"${{{name}}} is required: {arg}"
        return arg or ""

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:[-?])([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
    assert required == set(compose_variables()), "env.example lists exactly what the compose file requires"
    return interpolate(yaml.safe_load(text), compose_variables())  # type: ignore[no-any-return]


GATEWAYS = ("gateway-1", "gateway-2")


def test_the_compose_file_names_only_services_it_defines(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *GATEWAYS, "loadbalancer"}
    for name, service in services.items():
        depends = service.get("depends_on", [])
        for other in depends:
            assert other in services, f"{name} depends on {other}"
            if isinstance(depends, dict) and depends[other].get("condition") == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}'s health, which it lacks"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (DEPLOY / source).is_file() if source.startswith("./") else source in compose["volumes"]


def test_both_gateways_share_the_secret_the_database_and_redis_but_not_their_journal(
    compose: dict[str, Any],
) -> None:
    one, two = (compose["services"][g] for g in GATEWAYS)
    assert one["environment"] == two["environment"] and one["command"] == two["command"]
    assert one["environment"]["TURNOUT_KEY_HASH_SECRET"] == HASH_SECRET
    data = [next(v for v in g["volumes"] if v.endswith(":/var/lib/turnout")) for g in (one, two)]
    assert data[0] != data[1], "each instance journals to its own data directory"
    database = urlsplit(one["environment"]["DATABASE_URL"])
    postgres = compose["services"]["postgres"]["environment"]
    assert database.scheme == "postgresql+asyncpg" and database.hostname == "postgres"
    assert (database.username, database.password, database.path) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        "/" + postgres["POSTGRES_DB"],
    )
    assert urlsplit(one["environment"]["REDIS_URL"]).hostname == "redis"


def compose_settings(compose: dict[str, Any]) -> Settings:
    gateway = compose["services"]["gateway-1"]
    config = gateway["command"][gateway["command"].index("--config") + 1]
    mount = next(v for v in gateway["volumes"] if v.split(":")[1] == config)
    text = (DEPLOY / mount.split(":")[0]).read_text(encoding="utf-8")
    assert references(text) <= set(gateway["environment"]), "every env: reference is passed in"
    return load_settings(DEPLOY / mount.split(":")[0], gateway["environment"])


def test_the_gateways_configuration_loads_and_agrees_with_the_compose_file(compose: dict[str, Any]) -> None:
    settings = compose_settings(compose)
    gateway = compose["services"]["gateway-1"]
    assert settings.storage.database_url == gateway["environment"]["DATABASE_URL"]
    assert settings.storage.redis_url == gateway["environment"]["REDIS_URL"]
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 4000)  # the image's EXPOSE
    balancer = compose["services"]["loadbalancer"]["networks"]["default"]["ipv4_address"]
    assert [str(n) for n in settings.server.trusted_proxies] == [f"{balancer}/32"]
    stop = int(gateway["stop_grace_period"].removesuffix("s"))
    assert stop > settings.server.drain_delay + settings.server.shutdown_grace


def haproxy() -> dict[str, list[str]]:
    """Each section's directives (`backend gateways` -> ["balance leastconn", ...])."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not raw.startswith((" ", "\t")):
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def test_haproxy_balances_the_gateways_by_their_readiness(
    compose: dict[str, Any], served_image: Served
) -> None:
    backend = haproxy()["backend gateways"]
    servers = {d.split()[1]: d.split()[2] for d in backend if d.startswith("server ")}
    port = compose_settings(compose).server.port
    assert servers == {g: f"{g}:{port}" for g in GATEWAYS}
    check = next(d for d in backend if d.startswith("http-check send"))
    assert check == "http-check send meth GET uri /health/ready" and "option httpchk" in backend
    default = next(d for d in backend if d.startswith("default-server "))
    assert "resolvers docker" in default, "a gateway recreated with a new address is found again"
    assert "nameserver dns 127.0.0.11:53" in haproxy()["resolvers docker"]  # Docker's embedded DNS
    answered = httpx.get(f"http://127.0.0.1:{served_image.port}/health/ready")
    assert answered.status_code == 200, "the checked path is the gateway's readiness"
    bind = next(d for d in haproxy()["frontend turnout"] if d.startswith("bind "))
    assert compose["services"]["loadbalancer"]["ports"] == [f"4000:{bind.split(':')[-1]}"]


@pytest.mark.postgres
@pytest.mark.redis
def test_the_compose_gateways_started_on_postgres_and_redis_share_keys(
    compose: dict[str, Any], image: Image, tmp_path: Path
) -> None:
    """The two gateways as compose runs them (its command, environment and configuration; the
    services' host names pointed at this machine's PostgreSQL and Redis): a key issued on one is
    accepted by the other."""
    name = asyncio.run(create_postgres_database())
    gateway = compose["services"]["gateway-1"]
    environ = {
        **gateway["environment"],
        "DATABASE_URL": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:5432/{name}",
        "REDIS_URL": f"redis://{REDIS_HOST}:6379/0",
    }
    config = yaml.safe_load((DEPLOY / "turnout.yaml").read_text())
    config["server"]["host"] = "127.0.0.1"
    config["server"]["port"] = 0
    (tmp_path / "turnout.yaml").write_text(yaml.safe_dump(config))
    command = [
        a if a != "/etc/turnout/turnout.yaml" else str(tmp_path / "turnout.yaml") for a in gateway["command"]
    ]
    served: list[Served] = []
    try:
        for n in (1, 2):
            env = {**image_environment(image), **environ, "TURNOUT_DATA_DIR": str(tmp_path / f"data-{n}")}
            served.append(start_process(["turnout", *command], env))
        first, second = (f"http://127.0.0.1:{s.port}" for s in served)
        issued = httpx.post(
            first + "/admin/keys", headers={"authorization": f"Bearer {MASTER}"}, json={"name": "c"}
        )
        assert issued.status_code == 200, issued.text
        models = httpx.get(second + "/v1/models", headers={"authorization": f"Bearer {issued.json()['key']}"})
        assert models.status_code == 200 and {m["id"] for m in models.json()["data"]} == {
            "gpt-4o",
            "gpt-4o-mini",
        }
        ready = httpx.get(second + "/health/ready").json()
        assert (ready["status"], ready["instances"], ready["redis"]) == ("ready", 2, "ok")
        # stopping one: HAProxy's check sees it draining (for drain_delay) while it still serves
        served[0].proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while httpx.get(first + "/health/ready").status_code != 503:
            assert time.monotonic() < deadline, "readiness did not turn to draining"
            time.sleep(0.05)
        assert httpx.get(first + "/health/ready").json()["status"] == "draining"
        still = httpx.get(first + "/v1/models", headers={"authorization": f"Bearer {MASTER}"})
        assert still.status_code == 200, "a draining instance still serves"
        assert httpx.get(second + "/health/ready").status_code == 200
    finally:
        for s in served:
            s.proc.send_signal(signal.SIGTERM)  # both drain at once
        for s in served:
            assert s.stop() == 0
        asyncio.run(drop_postgres_database(name))


# ------------------------------------------------------------------ the Helm chart


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def valid(manifest: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{manifest['kind']}: {str(error).splitlines()[0]}")


def chart_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment with each Secret reference given a value."""
    secrets = {
        "TURNOUT_MASTER_KEY": MASTER,
        "TURNOUT_KEY_HASH_SECRET": HASH_SECRET,
        "DATABASE_URL": "postgresql+asyncpg://turnout@postgres:5432/turnout",
        "REDIS_URL": "redis://redis:6379/0",
    }
    return {
        e["name"]: e.get("value") or secrets.get(e["name"], f"secret-{e['name']}") for e in container["env"]
    }


def test_the_chart_renders_valid_kubernetes_manifests() -> None:
    manifests = render_manifests(CHART)
    assert sorted((m["apiVersion"], m["kind"]) for m in manifests) == [
        ("apps/v1", "Deployment"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
    ]
    for manifest in manifests:
        valid(manifest)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    deployment = by_kind(manifests)["Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"turnout:{__version__}"


def test_the_chart_wires_its_objects_to_each_other() -> None:
    kinds = by_kind(render_manifests(CHART))
    deployment, service = kinds["Deployment"], kinds["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    container = pod["spec"]["containers"][0]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    assert container["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0, "a rolling update never lowers the ready count"


def test_the_chart_configures_the_gateway_it_starts() -> None:
    kinds = by_kind(render_manifests(CHART))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    config_path = container["args"][container["args"].index("--config") + 1]
    assert config_path == f"{mount['mountPath']}/turnout.yaml"
    text = kinds["ConfigMap"]["data"]["turnout.yaml"]
    env = chart_environment(container)
    assert references(text) <= set(env), "every env: reference comes from the container's environment"
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {"TURNOUT_MASTER_KEY", "TURNOUT_KEY_HASH_SECRET", "DATABASE_URL", "REDIS_URL"} <= secrets
    settings = loaded(yaml.safe_load(text), env)
    assert (
        container["ports"][0]["containerPort"] == settings.server.port and settings.server.host == "0.0.0.0"
    )
    assert settings.storage.redis_url is not None and settings.storage.database_url.startswith("postgresql")
    drain = settings.server.drain_delay + settings.server.shutdown_grace
    assert pod["terminationGracePeriodSeconds"] > drain, "the kubelet never kills a gateway still draining"
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert env["TURNOUT_DATA_DIR"] == data["mountPath"] == "/var/lib/turnout"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's turnout user (Dockerfile)
    assert "--uid 10001" in (ROOT / "Dockerfile").read_text()


def test_the_chart_probes_are_the_gateways_health_routes(served_image: Served) -> None:
    container = by_kind(render_manifests(CHART))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    probes = {
        kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/health/live"
    for probe in probes.values():
        assert probe["port"] == "http"
        assert httpx.get(f"http://127.0.0.1:{served_image.port}{probe['path']}").status_code == 200


def test_without_autoscaling_the_chart_sets_replicas_and_can_leave_out_the_disruption_budget() -> None:
    manifests = render_manifests(
        CHART,
        {"autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False}, "replicaCount": 3},
    )
    kinds = by_kind(manifests)
    assert set(kinds) == {"ConfigMap", "Deployment", "Service"}
    assert kinds["Deployment"]["spec"]["replicas"] == 3
    for manifest in manifests:
        valid(manifest)


def test_a_configuration_change_rolls_the_pods() -> None:
    def checksum(overrides: dict[str, Any]) -> str:
        pod = by_kind(render_manifests(CHART, overrides))["Deployment"]["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/config"]  # type: ignore[no-any-return]

    assert checksum({}) != checksum({"config": {"server": {"shutdown_grace": "20s"}}})
    assert checksum({}) == checksum({"replicaCount": 5})


def test_the_chart_refuses_to_render_without_the_secret_it_reads() -> None:
    with pytest.raises(TemplateError, match="existingSecret"):
        render_chart(CHART, {"existingSecret": ""})


def test_the_renderer_refuses_templates_outside_its_subset(tmp_path: Path) -> None:
    for name in ("Chart.yaml", "values.yaml"):
        (tmp_path / name).write_text((CHART / name).read_text())
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "x.yaml").write_text('name: {{ printf "%s" .Release.Name }}\n')
    with pytest.raises(TemplateError, match="printf"):
        render_chart(tmp_path)


# ------------------------------------------------------------------ systemd


def unit() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in (DEPLOY / "systemd" / "turnout.service").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, sep, value = line.partition("=")
            assert sep, f"not a key=value line: {line!r}"
            current.append((key.strip(), value.strip()))
    return sections


# the directives this unit may use (man systemd.unit, systemd.service, systemd.exec)
KNOWN_KEYS = {
    "Unit": {"Description", "Documentation", "Wants", "After", "Requires"},
    "Install": {"WantedBy"},
    "Service": {
        "Type", "User", "Group", "EnvironmentFile", "Environment", "ExecStart", "ExecReload", "KillSignal",
        "TimeoutStopSec", "Restart", "RestartSec", "RestartPreventExitStatus", "StateDirectory",
        "StateDirectoryMode", "ConfigurationDirectory", "WorkingDirectory", "LimitNOFILE", "UMask",
        "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome",
        "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset",
        "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
        "LockPersonality", "RemoveIPC", "SystemCallArchitectures", "SystemCallFilter",
        "SystemCallErrorNumber",
    },
}  # fmt: skip


def test_the_unit_uses_only_known_directives_and_is_hardened() -> None:
    sections = unit()
    assert set(sections) == set(KNOWN_KEYS)
    for name, items in sections.items():
        unknown = {k for k, _ in items} - KNOWN_KEYS[name]
        assert not unknown, f"[{name}] {unknown}"
    service = dict(sections["Service"])
    assert service["User"] != "root" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["CapabilityBoundingSet"] == ""
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID" and service["KillSignal"] == "SIGTERM"
    defaults = loaded({}, {})
    assert int(service["TimeoutStopSec"]) > defaults.server.drain_delay + defaults.server.shutdown_grace
    environment = dict(v.split("=", 1) for k, v in sections["Service"] if k == "Environment")
    assert environment["TURNOUT_DATA_DIR"] == f"/var/lib/{service['StateDirectory']}"


def test_systemd_analyze_verifies_the_unit_with_the_installed_gateway(image: Image, tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / "turnout.service").read_text()
    start = dict(unit()["Service"])["ExecStart"]
    assert start.startswith("/opt/turnout/bin/turnout "), "the unit runs what the image installs"
    (tmp_path / "turnout.service").write_text(text.replace("/opt/turnout", str(image.host("/opt/turnout"))))
    analyze = "/usr/bin/systemd-analyze"
    if not Path(analyze).exists():  # the directive and command checks above and below still hold
        assert image.host("/opt/turnout/bin/turnout").exists()
        return
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "turnout.service")], capture_output=True, text=True
    )
    assert done.returncode == 0 and "turnout.service" not in done.stderr, done.stderr


def test_the_units_start_reload_and_stop_commands_work(image: Image, tmp_path: Path) -> None:
    """ExecStart runs as written (its paths moved to this test's folders); ExecReload's SIGHUP
    applies a changed configuration; KillSignal drains and exits 0."""
    service = unit()["Service"]
    etc, data = tmp_path / "etc", tmp_path / "data"
    etc.mkdir()
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {"f": {"type": "fake"}},
        "models": {"one": {"provider": "f", "model": "a"}},
    }
    (etc / "turnout.yaml").write_text(yaml.safe_dump(config))
    (etc / "turnout.env").write_text(f"TURNOUT_MASTER_KEY={MASTER}\n")
    places = {
        "/opt/turnout": str(image.host("/opt/turnout")),
        "/etc/turnout": str(etc),
        "/var/lib/turnout": str(data),
    }

    def moved(value: str) -> str:
        for path, here in places.items():
            value = value.replace(path, here)
        return value

    values = dict(service)
    env = {"PATH": BASE_PATH, "HOME": str(tmp_path)}
    env |= dict(moved(v).split("=", 1) for k, v in service if k == "Environment")
    env_file = moved(values["EnvironmentFile"]).lstrip("-")
    env |= dict(line.split("=", 1) for line in Path(env_file).read_text().splitlines())
    served = start_process(shlex.split(moved(values["ExecStart"])), env, cwd=tmp_path)
    try:
        root = f"http://127.0.0.1:{served.port}"
        assert httpx.get(root + "/health/ready").json()["models"] == 1
        config["models"]["two"] = {"provider": "f", "model": "b"}
        (etc / "turnout.yaml").write_text(yaml.safe_dump(config))
        reload = shlex.split(values["ExecReload"].replace("$MAINPID", str(served.proc.pid)))
        subprocess.run(reload, check=True)
        deadline = time.monotonic() + 20
        while httpx.get(root + "/health/ready").json()["models"] != 2:
            assert time.monotonic() < deadline, "SIGHUP did not apply the new configuration"
            time.sleep(0.05)
        assert served.proc.poll() is None, "the gateway is still running after SIGHUP"
        assert (data / "turnout.db").exists(), "the state goes to the StateDirectory"
    finally:
        code = served.stop(getattr(signal, values["KillSignal"]))
    assert code == 0


# ------------------------------------------------------------------ docs/deployment.md

FENCE = re.compile(r"^```(yaml[^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_every_yaml_block_in_the_deployment_guide_is_checked() -> None:
    """```yaml blocks are turnout configurations and load; ```yaml values.yaml blocks are chart
    values, rendered into valid manifests; ```yaml docker-compose.yml blocks quote services of
    deploy/docker-compose.yml as they are there."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    blocks = FENCE.findall(text)
    assert blocks, "the guide shows its configuration"
    environ = {n: f"value-{n}" for n in references(text)} | {"TURNOUT_MASTER_KEY": MASTER}
    environ |= {"DATABASE_URL": "postgresql+asyncpg://t@db/t", "REDIS_URL": "redis://redis:6379/0"}
    for info, body in blocks:
        doc = yaml.safe_load(body)
        if info == "yaml":
            loaded(doc, environ)
        elif info == "yaml values.yaml":
            manifests = render_manifests(CHART, doc)
            for manifest in manifests:
                valid(manifest)
            kinds = by_kind(manifests)
            container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
            config = kinds["ConfigMap"]["data"]["turnout.yaml"]
            assert references(config) <= {e["name"] for e in container["env"]}
            loaded(yaml.safe_load(config), chart_environment(container))
        else:
            assert info == "yaml docker-compose.yml", f"unknown fence ```{info}"
            services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
            for name, shown in doc.items():
                assert {k: services[name][k] for k in shown} == shown, f"{name} as the compose file has it"
