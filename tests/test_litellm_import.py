"""`turnout keys import --from-litellm FILE` against a real gateway: each LiteLLM key of an export
is issued anew with its name, models, expiry, budget, rate limits and metadata; blocked and
expired ones are skipped, saying why; the new keys work through the OpenAI SDK; a plaintext key
in the export is never used or printed; a dry run issues nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from click.testing import CliRunner, Result

from turnout.cli.main import main
from turnout.providers.config_loader import build_settings

from support.gateway import MASTER_KEY, Gateway, settings_for

CLEAN_ENV: dict[str, str | None] = {
    "TURNOUT_ADMIN_KEY": None,
    "TURNOUT_MASTER_KEY": None,
    "TURNOUT_URL": None,
}
OLD_PLAINTEXT = "sk-litellm-old-plaintext-0123456789abcdef"
LATER = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
EARLIER = "2024-01-01T00:00:00Z"

EXPORT = {
    "keys": [
        {
            "token": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
            "key": OLD_PLAINTEXT,
            "key_alias": "etl-pipeline",
            "key_name": "sk-...cdef",
            "models": ["chat"],
            "max_budget": 25.5,
            "budget_duration": "30d",
            "spend": 3.2,
            "expires": LATER,
            "rpm_limit": 60,
            "tpm_limit": 10000,
            "max_parallel_requests": 4,
            "metadata": {"owner": "data"},
            "team_id": "litellm-team-1",
        },
        {"token": "a1" * 32, "key_name": "sk-...9f00", "models": ["all-proxy-models"], "expires": None},
        {"token": "b2" * 32, "key_alias": "old-intern", "expires": EARLIER},
        {"token": "c3" * 32, "key_alias": "banned", "blocked": True},
    ],
    "total_count": 4,
}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}, "other": {"provider": "fake", "model": "o"}},
    }
    gateway = Gateway(settings_for(doc, tmp_path / "data")).start()
    yield gateway
    gateway.stop()


def run(gateway: Gateway, export: Path, *more: str) -> Result:
    args = ["keys", "import", "--url", gateway.root_url, "--key", MASTER_KEY, "--from-litellm", str(export)]
    return CliRunner().invoke(main, [*args, *more], env=CLEAN_ENV)


def keys(gateway: Gateway) -> list[dict[str, Any]]:
    listed = httpx.get(gateway.root_url + "/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"})
    return [k for k in listed.json()["data"] if k["name"] != "master key"]


def chat(gateway: Gateway, key: str, model: str) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        answer = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def test_litellm_keys_are_issued_anew_with_what_they_carried(gateway: Gateway, tmp_path: Path) -> None:
    export = tmp_path / "keys.json"
    export.write_text(json.dumps(EXPORT))
    result = run(gateway, export)
    assert result.exit_code == 0, (result.output, result.exception)
    lines = {line.split("\t")[0]: line.split("\t")[1:] for line in result.stdout.splitlines()}
    assert set(lines) == {"etl-pipeline", "sk-...9f00"}
    assert "skipped old-intern: expired 2024-01-01" in result.stderr
    assert "skipped banned: blocked in LiteLLM" in result.stderr
    assert (
        "budget_duration '30d' not carried" in result.stderr and "team_id 'litellm-team-1'" in result.stderr
    )
    assert OLD_PLAINTEXT not in result.output

    issued = {k["name"]: k for k in keys(gateway)}
    etl = issued["etl-pipeline"]
    assert etl["models"] == ["chat"] and etl["max_budget_micros"] == 25_500_000
    assert etl["limits"] == {"rpm": 60, "tpm": 10000, "parallel": 4}
    assert etl["metadata"] == {"owner": "data", "litellm_key": "etl-pipeline"}
    assert abs(etl["expires_at"] - dt.datetime.fromisoformat(LATER).timestamp()) < 60
    assert issued["sk-...9f00"]["models"] is None and issued["sk-...9f00"]["expires_at"] is None

    etl_key, open_key = lines["etl-pipeline"][1], lines["sk-...9f00"][1]
    assert chat(gateway, etl_key, "chat")
    with pytest.raises(openai.NotFoundError):
        chat(gateway, etl_key, "other")  # LiteLLM let it use only "chat"
    assert chat(gateway, open_key, "other")
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, OLD_PLAINTEXT, "chat")  # the old key is not a turnout key


def test_a_dry_run_issues_nothing(gateway: Gateway, tmp_path: Path) -> None:
    export = tmp_path / "keys.json"
    export.write_text(json.dumps(EXPORT["keys"]))  # a plain list works too
    result = run(gateway, export, "--dry-run")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "etl-pipeline: would issue" in result.stdout and '"max_budget": "25.5"' in result.stdout
    assert keys(gateway) == []


def test_an_export_of_hashes_only_is_refused_with_how_to_export(gateway: Gateway, tmp_path: Path) -> None:
    export = tmp_path / "keys.json"
    export.write_text(json.dumps({"keys": ["88dc28d0f030c55ed4ab77ed8faf0981"]}))
    result = run(gateway, export)
    assert result.exit_code == 1
    assert "return_full_object=true" in result.stderr and "Traceback" not in result.output
    export.write_text("not json")
    assert "cannot read it as JSON" in run(gateway, export).stderr
    assert keys(gateway) == []


def test_the_migration_guides_configuration_loads_and_its_litellm_example_parses() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "migrating-from-litellm.md").read_text()
    blocks = re.findall(r"^```(yaml[^\n]*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert [info for info, _ in blocks] == ["yaml litellm-config.yaml", "yaml"]
    litellm, ours = (yaml.safe_load(body) for _, body in blocks)
    assert {m["model_name"] for m in litellm["model_list"]} == {"gpt-4o", "claude-sonnet"}
    environ = {name: f"value-{name}" for name in re.findall(r"env:([A-Z_]+)", blocks[1][1])}
    environ["TURNOUT_DATABASE_URL"] = "postgresql+asyncpg://turnout@db/turnout"
    settings = build_settings(ours, environ, source="docs/migrating-from-litellm.md")
    assert set(settings.models) == {"gpt-4o", "claude-sonnet"}  # the same aliases LiteLLM served
