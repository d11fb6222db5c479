"""`turnout serve` and `turnout demo` as real processes: the master key's first start, graceful
shutdown with a stream in flight, readiness while draining."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from support.process import TURNOUT, Served, start_serve

KEY = re.compile(r"^\s+(sk-turnout-\S+)$", re.MULTILINE)
OWN_MASTER_KEY = "sk-my-own-master-key-zFeYJ8E7ljzYlGxhTZKk7RH7cNgeot1e1Ll9xIl8btY"
SHUTDOWN_MASTER_KEY = "sk-master-for-shutdown-KPsOLtTDnfSLZgpcI65rHIiw0FEVPqKqYWZ6QCEmFPM"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "turnout.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "server": {"shutdown_grace": "20s"},
                "storage": {"data_dir": str(tmp_path / "data")},
                "providers": {"local": {"type": "fake", "fake": {"chunks": 30, "chunk_gap": "30ms"}}},
                "models": {
                    "slow": {"provider": "local", "model": "slow-model"},
                    "fake/*": {"provider": "local", "model": "*"},
                },
            }
        )
    )
    return path


@pytest.fixture
def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    return {**clean, "TURNOUT_LOG_LEVEL": "warning"}


@pytest.fixture
def running(config: Path, env: dict[str, str]) -> Iterator[Served]:
    served = start_serve(config, env)
    yield served
    served.stop(signal.SIGKILL)


def test_first_start_generates_a_master_key_shown_once_and_stored_hashed(
    running: Served, config: Path, env: dict[str, str], tmp_path: Path
) -> None:
    match = KEY.search(running.banner)
    assert match, running.banner
    key = match.group(1)
    with openai.OpenAI(base_url=running.base_url, api_key=key, max_retries=0) as client:
        assert client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}]).id
    assert running.stop() == 0

    database = (tmp_path / "data" / "turnout.db").read_bytes()
    assert key.encode() not in database  # only a keyed hash is stored
    with sqlite3.connect(tmp_path / "data" / "turnout.db") as db:
        ((stored_hash, prefix),) = db.execute("SELECT key_hash, prefix FROM api_keys WHERE kind = 'master'")
    assert len(stored_hash) == 32 and key.startswith(prefix) and len(prefix) < len(key) // 2

    again = start_serve(config, env)  # a second start keeps the key and does not show it again
    try:
        assert key not in again.banner and "stored (hashed)" in again.banner
        with openai.OpenAI(base_url=again.base_url, api_key=key, max_retries=0) as client:
            assert client.models.list().data
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=again.base_url, api_key=key + "x", max_retries=0).models.list()
    finally:
        assert again.stop() == 0


def test_master_key_from_environment_is_never_printed(config: Path, env: dict[str, str]) -> None:
    served = start_serve(config, {**env, "TURNOUT_MASTER_KEY": OWN_MASTER_KEY})
    try:
        assert "sk-my-own-master-key" not in served.banner
        assert "env:TURNOUT_MASTER_KEY" in served.banner
        with openai.OpenAI(base_url=served.base_url, api_key=OWN_MASTER_KEY, max_retries=0) as client:
            assert client.models.retrieve("slow").id == "slow"
    finally:
        assert served.stop() == 0


def test_sigterm_lets_a_stream_in_flight_finish(config: Path, env: dict[str, str]) -> None:
    served = start_serve(config, {**env, "TURNOUT_MASTER_KEY": SHUTDOWN_MASTER_KEY})
    try:
        with openai.OpenAI(base_url=served.base_url, api_key=SHUTDOWN_MASTER_KEY, max_retries=0) as client:
            stream = client.chat.completions.create(
                model="slow", messages=[{"role": "user", "content": "tell me a long story"}], stream=True
            )
            chunks = iter(stream)
            first = next(chunks)  # the stream is in flight: now ask the gateway to stop
            served.proc.send_signal(signal.SIGTERM)
            rest = list(chunks)
        content = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
        assert content == "You said: tell me a long story"
        assert [c.choices[0].finish_reason for c in rest if c.choices][-1] == "stop"
        assert served.stop() == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{served.port}/health/live", timeout=2)
    finally:
        served.stop(signal.SIGKILL)


def test_readiness_fails_first_while_draining(tmp_path: Path, config: Path, env: dict[str, str]) -> None:
    doc = yaml.safe_load(config.read_text())
    doc["server"]["drain_delay"] = "30s"
    config.write_text(yaml.safe_dump(doc))
    served = start_serve(config, env)
    try:
        url = f"http://127.0.0.1:{served.port}/health/ready"
        assert httpx.get(url, timeout=5).status_code == 200
        served.proc.send_signal(signal.SIGTERM)
        # still serving during the drain delay, but no longer ready
        with httpx.Client(timeout=5) as http:
            for _ in range(100):
                response = http.get(url)
                if response.status_code == 503:
                    break
            assert response.status_code == 503 and response.json()["status"] == "draining"
            assert http.get(f"http://127.0.0.1:{served.port}/health/live").status_code == 200
    finally:
        served.stop(signal.SIGKILL)


def test_demo_answers_streams_and_reports_usage(env: dict[str, str]) -> None:
    out = subprocess.run(
        [TURNOUT, "demo", "--exit", "--port", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "base URL  http://127.0.0.1:" in text
    assert re.search(r"API key   sk-turnout-\S+", text)
    assert "curl http://127.0.0.1:" in text and "from openai import OpenAI" in text
    assert "-> 'You said: What does a railway turnout do?'" in text
    assert re.search(r"first token after \d+ ms, \d+ chunks, \d+ prompt \+ \d+ completion tokens", text)
    assert "the model calls get_weather" in text
    assert "HTTP 503 upstream_unavailable" in text
    assert re.search(r"Tokens accounted for so far: [1-9]\d* across 4 requests", text)
    # the outage scene: alpha goes down and comes back, no client request fails
    assert "fake-alpha goes down" in text and "fake-alpha is back up" in text
    assert "alpha's circuit breaker opens" in text and "its breaker closed" in text
    assert "<- failed over" in text
    summary = re.search(r"(\d+) requests, 0 failed; served (\d+) by alpha, (\d+) by beta\.", text)
    assert summary is not None and int(summary[2]) > 0 and int(summary[3]) > 0
    assert "FAILED" not in text


def test_the_demos_python_snippet_pastes_and_runs(env: dict[str, str], tmp_path: Path) -> None:
    """What `turnout demo` prints for Python, pasted into `python3` as it is, answers."""
    demo = subprocess.Popen(
        [TURNOUT, "demo", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert demo.stdout is not None
        snippet: list[str] = []
        for line in demo.stdout:  # up to the end of the tour: the gateway then just serves
            if "keeps running for you to try" in line:
                break
            if line.startswith("from openai import OpenAI") or (
                snippet and not snippet[-1].startswith("print(")
            ):
                snippet.append(line)
        assert snippet and snippet[-1].startswith("print("), snippet
        pasted = subprocess.run(
            [sys.executable, "-"], input="".join(snippet), capture_output=True, text=True, timeout=60
        )
        assert pasted.returncode == 0, pasted.stderr
        assert "Hello!" in pasted.stdout and "prompt_tokens" in pasted.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(30)
        if demo.stdout is not None:
            demo.stdout.close()
