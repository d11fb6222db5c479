"""The clients people put behind a gateway, run for real against turnout in front of a fake
provider that calls a tool first and answers after the tool's output (support.agent_upstream):
Claude Code and Codex CLI (from npm, pinned in tests/clients/package-lock.json, installed into a
cache by scripts/install-test-clients), the Vercel AI SDK's OpenAI and Anthropic providers (a
small node script), LangChain's ChatOpenAI and LlamaIndex's OpenAI LLM. Each runs
non-interactively with bounded turns; the tests check the answer the user sees and what reached
the provider. The npm clients are skipped, saying why, only when the npm registry is unreachable.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.agent_upstream import GREETING, AgentUpstream, answer_after
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install-test-clients"
AI_SDK_SCRIPT = ROOT / "tests" / "clients" / "ai_sdk.mjs"
UNREACHABLE = 75  # the install script's exit code when npm or its registry is not there
SECRET = "turnout-rails-42"  # in the file the agents read through their tool
CLIENT_TIMEOUT = 150


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The folder holding node_modules with the pinned clients (installed once, then cached)."""
    done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode == UNREACHABLE:
        pytest.skip(f"the npm clients cannot be installed: {done.stderr.strip()}")
    assert done.returncode == 0, f"scripts/install-test-clients failed:\n{done.stderr}"
    return Path(done.stdout.strip().splitlines()[-1])


def test_the_install_script_says_when_npm_is_unreachable(tmp_path: Path) -> None:
    """The one case the npm clients' tests are skipped: the registry cannot be reached."""
    env = {**os.environ, "npm_config_registry": "http://127.0.0.1:9/", "TURNOUT_CLIENTS_CACHE": str(tmp_path)}
    done = subprocess.run([str(INSTALL)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == UNREACHABLE
    assert "cannot be reached" in done.stderr and "127.0.0.1:9" in done.stderr


@pytest.fixture
def agent() -> Iterator[AgentUpstream]:
    server = AgentUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def gateway(agent: AgentUpstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    doc = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "claude": {"type": "anthropic", "base_url": agent.base_url, "api_key": "env:UPSTREAM_KEY"},
            "compatible": {
                "type": "openai_compatible",
                "base_url": agent.base_url,
                "api_key": "env:UPSTREAM_KEY",
            },
            # OpenAI's own type: it has the Responses API, so /v1/responses goes to it whole
            "openai": {"type": "openai", "base_url": agent.base_url, "api_key": "env:UPSTREAM_KEY"},
        },
        "models": {
            "agent-claude": {"provider": "claude", "model": "claude-test"},
            "agent-gpt": {"provider": "compatible", "model": "test-model"},
            "agent-responses": {"provider": "openai", "model": "test-model"},
            # LlamaIndex checks the model name against OpenAI's own
            "gpt-4o-mini": {"provider": "compatible", "model": "test-model"},
        },
    }
    return start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A project folder with the note the agents are told to read, and a home of their own."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "note.txt").write_text(SECRET + "\n")
    (tmp_path / "home").mkdir()
    return folder


def run_client(command: list[str], workdir: Path, env: dict[str, str]) -> str:
    """Run a client to its end (no terminal, nothing on stdin); its stdout."""
    base = {"PATH": os.environ["PATH"], "HOME": str(workdir.parent / "home"), "LANG": "C.UTF-8"}
    done = subprocess.run(
        command,
        cwd=workdir,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{command[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def tool_outputs(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m["content"]) for m in messages if m.get("role") == "tool"]


# ----------------------------------------------------------------------------- Claude Code


def claude_code(node_clients: Path, gateway: Gateway, workdir: Path, model: str) -> str:
    return run_client(
        [
            str(node_clients / "node_modules" / ".bin" / "claude"),
            "-p",
            "Read note.txt and tell me what it says.",
            "--model",
            model,
            "--max-turns",
            "3",
            "--allowedTools",
            "Read",
        ],
        workdir,
        {
            "ANTHROPIC_BASE_URL": gateway.root_url,
            "ANTHROPIC_API_KEY": MASTER_KEY,
            "CLAUDE_CONFIG_DIR": str(workdir.parent / "claude"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        },
    )


def test_claude_code_through_an_anthropic_provider_gets_every_field_natively(
    node_clients: Path, gateway: Gateway, agent: AgentUpstream, workdir: Path
) -> None:
    agent.agent("Read", {"file_path": str(workdir / "note.txt")})
    out = claude_code(node_clients, gateway, workdir, "agent-claude")
    assert "The tool returned:" in out and SECRET in out
    sent = [r for r in agent.requests if r.path == "/v1/messages"]
    assert len(sent) == 2  # the tool call, then the answer after its output
    first, second = sent
    # passed on whole: the beta endpoint and headers, and what only Anthropic's models read
    assert first.query == {"beta": "true"} and "claude-code-20250219" in first.headers["anthropic-beta"]
    body = first.json
    assert body["model"] == "claude-test" and body["stream"] is True
    assert isinstance(body["metadata"]["user_id"], str)
    assert any("cache_control" in block for block in body["system"])
    assert "thinking" in body and "Read" in {t["name"] for t in body["tools"]}
    result = next(b for b in second.json["messages"][-1]["content"] if b["type"] == "tool_result")
    assert SECRET in json.dumps(result["content"])


def test_claude_code_through_an_openai_format_provider_is_translated(
    node_clients: Path, gateway: Gateway, agent: AgentUpstream, workdir: Path
) -> None:
    agent.agent("Read", {"file_path": str(workdir / "note.txt")})
    out = claude_code(node_clients, gateway, workdir, "agent-gpt")
    assert "The tool returned:" in out and SECRET in out
    sent = agent.posted("/chat/completions")
    assert len(sent) == 2
    first, second = sent
    assert first["model"] == "test-model" and first["stream"] is True
    assert "Read" in {t["function"]["name"] for t in first["tools"]}
    # what only tunes Anthropic's models stays behind; nothing Anthropic-shaped reaches OpenAI's format
    assert not {"thinking", "context_management", "output_config", "system", "metadata"} & set(first)
    assert {m["role"] for m in first["messages"]} <= {"system", "user", "assistant"}
    assert any(SECRET in output for output in tool_outputs(second["messages"]))


# ----------------------------------------------------------------------------- Codex CLI


def codex(node_clients: Path, gateway: Gateway, workdir: Path, model: str) -> str:
    home = workdir.parent / "codex"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "turnout"\n'
        "[model_providers.turnout]\n"
        'name = "turnout"\n'
        f'base_url = "{gateway.base_url}"\n'
        'env_key = "TURNOUT_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    return run_client(
        [
            str(node_clients / "node_modules" / ".bin" / "codex"),
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",  # the tests' containers may not nest one
            "Read note.txt and tell me what it says.",
        ],
        workdir,
        {"CODEX_HOME": str(home), "TURNOUT_KEY": MASTER_KEY},
    )


def test_codex_through_an_openai_format_provider_without_a_responses_api(
    node_clients: Path, gateway: Gateway, agent: AgentUpstream, workdir: Path
) -> None:
    agent.agent("exec_command", {"cmd": "cat note.txt"})
    out = codex(node_clients, gateway, workdir, "agent-gpt")
    assert "The tool returned:" in out and SECRET in out
    sent = agent.posted("/chat/completions")
    assert len(sent) == 2
    first, second = sent
    assert first["stream"] is True and "client_metadata" not in first
    assert "exec_command" in {t["function"]["name"] for t in first["tools"]}
    calls = [m for m in second["messages"] if m.get("tool_calls")]
    assert calls[-1]["tool_calls"][0]["function"]["name"] == "exec_command"
    assert any(SECRET in output for output in tool_outputs(second["messages"]))


def test_codex_through_a_provider_with_the_responses_api_is_forwarded(
    node_clients: Path, gateway: Gateway, agent: AgentUpstream, workdir: Path
) -> None:
    agent.agent("exec_command", {"cmd": "cat note.txt"})
    out = codex(node_clients, gateway, workdir, "agent-responses")
    assert "The tool returned:" in out and SECRET in out
    assert agent.posted("/chat/completions") == []
    sent = agent.posted("/responses")
    assert len(sent) == 2
    first, second = sent
    # passed on whole: Codex's own fields and tools, the deployment's model
    assert first["model"] == "test-model" and first["stream"] is True
    assert "client_metadata" in first and {t["type"] for t in first["tools"]} >= {"function", "web_search"}
    outputs = [i for i in second["input"] if i.get("type") == "function_call_output"]
    assert outputs and SECRET in json.dumps(outputs[-1]["output"])


# ----------------------------------------------------------------------------- Vercel AI SDK


def ai_sdk(node_clients: Path, workdir: Path, provider: str, base_url: str, model: str) -> str:
    env = {"NODE_PATH": str(node_clients / "node_modules"), "TURNOUT_KEY": MASTER_KEY}
    script = node_clients / "ai_sdk.mjs"  # beside its node_modules, where its imports resolve
    script.write_text(AI_SDK_SCRIPT.read_text())
    return run_client(["node", str(script), provider, base_url, model], workdir, env)


def test_the_ai_sdks_openai_provider(
    node_clients: Path, gateway: Gateway, agent: AgentUpstream, workdir: Path
) -> None:
    agent.agent("get_weather", {"city": "Lisbon"})
    out = ai_sdk(node_clients, workdir, "openai", gateway.base_url, "agent-gpt")
    assert out.strip() == answer_after("sunny in Lisbon")
    first, second = agent.posted("/chat/completions")
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert tool_outputs(second["messages"]) == [json.dumps("sunny in Lisbon")] or "sunny in Lisbon" in str(
        tool_outputs(second["messages"])
    )


def test_the_ai_sdks_anthropic_provider(
    node_clients: Path, gateway: Gateway, agent: AgentUpstream, workdir: Path
) -> None:
    agent.agent("get_weather", {"city": "Lisbon"})
    out = ai_sdk(node_clients, workdir, "anthropic", gateway.base_url, "agent-claude")
    assert out.strip() == answer_after("sunny in Lisbon")
    first, second = [r.json for r in agent.requests if r.path == "/v1/messages"]
    assert first["tools"][0]["name"] == "get_weather"
    assert "sunny in Lisbon" in json.dumps(second["messages"][-1])


# ----------------------------------------------------------------------------- Python frameworks


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather at a place",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_langchain_chat_openai(gateway: Gateway, agent: AgentUpstream) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    agent.agent("get_weather", {"city": "Lisbon"})
    chat = ChatOpenAI(model="agent-gpt", base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0)
    tooled = chat.bind_tools([WEATHER_TOOL])
    question = HumanMessage("What is the weather in Lisbon?")
    asked = tooled.invoke([question])
    assert asked.tool_calls[0]["name"] == "get_weather" and asked.tool_calls[0]["args"] == {"city": "Lisbon"}
    output = ToolMessage("sunny in Lisbon", tool_call_id=asked.tool_calls[0]["id"])
    answered = tooled.invoke([question, asked, output])
    assert answered.content == answer_after("sunny in Lisbon")
    streamed = "".join(str(c.content) for c in chat.stream("Hi"))
    assert streamed == GREETING
    assert tool_outputs(agent.posted("/chat/completions")[1]["messages"]) == ["sunny in Lisbon"]


def test_llama_index_openai_llm(gateway: Gateway, agent: AgentUpstream) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model="gpt-4o-mini", api_base=gateway.base_url, api_key=MASTER_KEY, max_retries=0)
    answer = llm.chat([ChatMessage(role="user", content="Hi")])
    assert answer.message.content == GREETING
    streamed = "".join(chunk.delta or "" for chunk in llm.stream_complete("Hi"))
    assert streamed == GREETING
    assert [r["model"] for r in agent.posted("/chat/completions")] == ["test-model", "test-model"]
