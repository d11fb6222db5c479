"""Every configuration example in the README and docs/ is a configuration turnout accepts, as a
reader would paste it: each fenced ```yaml block is loaded by the same loader as
`turnout config check`, with a dummy value for each environment variable it references and a
dummy file for each file it names under /etc/turnout/. Fences of other YAML files (compose
files, Kubernetes manifests, Helm values) say what they are after the language (```yaml compose):
those are only parsed as YAML."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
import yaml

from turnout.providers.config_loader import build_settings

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(?P<info>yaml[^\n]*)\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)
_ENV_REFERENCE = re.compile(r"env:([A-Z_][A-Z0-9_]*)")
_FILE_NAMED = re.compile(r"/etc/turnout/[\w./-]+")
# A service-account key file has these fields (checked at load; never used: nothing is called).
SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "docs-example",
    "client_email": "turnout@docs-example.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n",
    "token_uri": "https://oauth2.googleapis.com/token",
}


def _dummy(variable: str) -> str:
    if variable.endswith("ACCESS_KEY_ID"):
        return "AKIAIOSFODNN7EXAMPLE"  # the shape AWS documents for an access key id
    return f"dummy-{variable.lower()}-0123456789abcdef"


def _blocks() -> list[tuple[str, str, str]]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{document.relative_to(ROOT)}:{line}", match["info"].strip(), match["body"]))
    return found


BLOCKS = _blocks()
CONFIGS = [pytest.param(body, id=where) for where, info, body in BLOCKS if info == "yaml"]
OTHER_YAML = [(where, body) for where, info, body in BLOCKS if info != "yaml"]


def test_the_documents_hold_configuration_examples() -> None:
    assert len(CONFIGS) >= 10  # a broken fence pattern would otherwise check nothing


@pytest.mark.parametrize("body", CONFIGS)
def test_every_configuration_example_loads(body: str, tmp_path: Path) -> None:
    for name in sorted(set(_FILE_NAMED.findall(body))):
        dummy = tmp_path / name.removeprefix("/")
        dummy.parent.mkdir(parents=True, exist_ok=True)
        dummy.write_bytes(orjson.dumps(SERVICE_ACCOUNT))
        body = body.replace(name, str(dummy))
    environ = {name: _dummy(name) for name in _ENV_REFERENCE.findall(body)}
    environ["TURNOUT_DATA_DIR"] = str(tmp_path / "data")
    data = yaml.safe_load(body)
    assert isinstance(data, dict)
    build_settings(data, environ, source="example")  # raises ConfigError naming each fault


def test_every_other_yaml_example_parses() -> None:
    for where, body in OTHER_YAML:
        assert list(yaml.safe_load_all(body)), where
