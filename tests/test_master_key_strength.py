"""A master key must be strong: a short, repetitive or guessable one is a configuration error that
names `auth.master_key` and where the key came from, says how to make a good one, and never shows
the key. `turnout config check` reports it and `turnout serve` refuses to start."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from turnout.config.key_strength import weakness
from turnout.config.loader import ConfigError
from turnout.keys.hashing import new_key
from turnout.providers.config_loader import build_settings

from support.gateway import MASTER_KEY
from support.process import TURNOUT

WEAK = [
    pytest.param("sk-test-master-0123456789", "too short (25 characters", id="short"),
    pytest.param("x" * 31, "too short (31 characters", id="31-characters"),
    pytest.param("a" * 48, "1-character string repeated", id="one-character"),
    pytest.param("Tr0ub4dor&3" * 4, "11-character string repeated", id="repeated-pattern"),
    pytest.param("abcdefghijklmnopqrstuvwxyz0123456789", "too easy to guess", id="a-run"),
    pytest.param("sk-" + "ab" * 15 + "cd" * 10, "too easy to guess", id="few-distinct"),
    pytest.param("aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpP", "too easy to guess", id="a-run-of-pairs"),
    pytest.param("0123456789abcdef" * 2 + "0", "too easy to guess", id="hex-alphabet-in-order"),
]


def _build(environ: dict[str, str], auth: dict[str, str] | None = None) -> None:
    doc = {"auth": auth} if auth else {}
    build_settings({**doc, "storage": {"data_dir": "/nonexistent"}}, environ, source="test")


@pytest.mark.parametrize(("key", "why"), WEAK)
def test_a_weak_master_key_from_the_environment_is_refused(key: str, why: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _build({"TURNOUT_MASTER_KEY": key})
    [problem] = refused.value.problems
    assert problem.startswith("auth.master_key: the master key from env:TURNOUT_MASTER_KEY ")
    assert why in problem
    assert "secrets.token_urlsafe(32)" in problem and "openssl rand -hex 32" in problem
    assert key not in str(refused.value) and key not in refused.value.render()


def test_a_weak_master_key_from_a_file_reference_is_refused(tmp_path: Path) -> None:
    (tmp_path / "master").write_text("changeme-changeme-changeme-changeme\n")
    with pytest.raises(ConfigError) as refused:
        _build({}, {"master_key": f"file:{tmp_path / 'master'}"})
    [problem] = refused.value.problems
    assert problem.startswith(f"auth.master_key: the master key from file:{tmp_path / 'master'} ")
    assert "changeme" not in problem


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(MASTER_KEY, id="the-tests-key"),
        pytest.param("sk-" + secrets.token_urlsafe(32), id="token_urlsafe"),
        pytest.param(secrets.token_hex(32), id="openssl-rand-hex-32"),
        pytest.param(new_key(), id="generated-on-first-start"),
        pytest.param("correct-horse-battery-staple-on-a-rainy-day-42", id="long-passphrase"),
    ],
)
def test_a_strong_master_key_is_accepted(key: str) -> None:
    assert weakness(key) is None
    _build({"TURNOUT_MASTER_KEY": key})


def test_what_the_hint_generates_is_always_strong() -> None:
    for _ in range(500):
        assert weakness("sk-" + secrets.token_urlsafe(32)) is None
        assert weakness(secrets.token_hex(32)) is None
        assert weakness(new_key()) is None


def _turnout(*args: str, home: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "LC_ALL": "C.UTF-8", **environ}
    return subprocess.run([TURNOUT, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_config_check_and_serve_refuse_a_weak_master_key(tmp_path: Path) -> None:
    config = tmp_path / "turnout.yaml"
    config.write_text(yaml.safe_dump({"storage": {"data_dir": str(tmp_path / "data")}}))
    weak = "sk-admin-password-1"
    for command in (("config", "check"), ("serve", "--port", "0")):
        result = _turnout(*command, "--config", str(config), home=tmp_path, TURNOUT_MASTER_KEY=weak)
        assert result.returncode == 2, result.stderr
        assert "auth.master_key: the master key from env:TURNOUT_MASTER_KEY is too short" in result.stderr
        assert "openssl rand -hex 32" in result.stderr
        assert weak not in result.stderr and weak not in result.stdout
    assert not (tmp_path / "data").exists()  # serve stopped before it touched anything
