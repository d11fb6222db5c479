"""The rehearsal scenario the tests share: five requests (text, two tool calls, a JSON schema, a
stream) sent through a gateway to `primary` and logged; the candidates' scripted answers (`backup`
answers the same, slower; `other` otherwise); and the CLI run in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import yaml
from click.testing import CliRunner

from turnout.cli.main import main

from support.answering import AnsweringUpstream, Reply
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for

PRIMARY_PRICE = {"input": "2.50", "output": "10.00"}
BACKUP_PRICE = {"input": "1.00", "output": "4.00"}
OTHER_PRICE = {"input": "0.50", "output": "2.00"}
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "TURNOUT_MASTER_KEY": MASTER_KEY}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
PERSON = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
    },
}
CAPITAL, WEATHER_Q, TIME_Q, ADA, HELLO = (
    "What is the capital of France?",
    "Weather in Paris?",
    "What time is it in UTC?",
    "Describe Ada as JSON.",
    "Say hello.",
)
PRIMARY = {
    CAPITAL: Reply("Paris is the capital of France.", prompt_tokens=20, completion_tokens=8),
    WEATHER_Q: Reply(
        tool_calls=(("get_weather", '{"city": "Paris"}'),),
        finish_reason="tool_calls",
        prompt_tokens=30,
        completion_tokens=10,
    ),
    TIME_Q: Reply(
        tool_calls=(("get_time", '{"zone": "UTC"}'),),
        finish_reason="tool_calls",
        prompt_tokens=28,
        completion_tokens=9,
    ),
    ADA: Reply('{"name": "Ada", "age": 36}', prompt_tokens=25, completion_tokens=12),
    HELLO: Reply("Hello there! How can I help you today?", prompt_tokens=10, completion_tokens=9),
}
SLOW = 0.3  # seconds `backup` waits before each answer
BACKUP = {prompt: Reply(**{**reply.__dict__, "delay": SLOW}) for prompt, reply in PRIMARY.items()}
OTHER = {
    # (the delays spread its latencies for the report's plots; no test times them)
    CAPITAL: Reply("The capital of France is Paris.", prompt_tokens=20, completion_tokens=7, delay=0.12),
    WEATHER_Q: Reply(
        tool_calls=(("get_weather", '{"city": "Paris, FR", "unit": "c"}'),),  # "unit": not in the schema
        finish_reason="tool_calls",
        prompt_tokens=30,
        completion_tokens=14,
        delay=0.2,
    ),
    TIME_Q: Reply(
        tool_calls=(("get_time", '{ "zone" : "UTC" }'),),  # the same arguments, spaced otherwise
        finish_reason="tool_calls",
        prompt_tokens=28,
        completion_tokens=9,
        delay=0.05,
    ),
    ADA: Reply('{"name": "Ada"}', prompt_tokens=25, completion_tokens=6, delay=0.15),  # "age" is required
    HELLO: Reply(
        "Hello there! How can I help you today?",
        finish_reason="length",
        prompt_tokens=10,
        completion_tokens=9,
        delay=0.08,
    ),
}


def config_doc(primary: str, backup: str, other: str) -> dict[str, Any]:
    def provider(url: str) -> dict[str, Any]:
        return {"type": "openai_compatible", "base_url": url, "api_key": "env:UPSTREAM_KEY"}

    return {
        "routing": {"retries": {"attempts": 1}},
        "providers": {"primary": provider(primary), "backup": provider(backup), "other": provider(other)},
        "models": {
            "chat": {"provider": "primary", "model": "gpt-4o", "price": PRIMARY_PRICE},
            "chat-backup": {"provider": "backup", "model": "small", "price": BACKUP_PRICE},
            "chat-other": {"provider": "other", "model": "mini", "price": OTHER_PRICE},
            "judge": {"provider": "other", "model": "judge", "price": OTHER_PRICE},
        },
        "request_logs": {"log_by_default": True},
    }


class Logged:
    """A gateway's history of five requests to `chat` (answered by `primary`), stopped; and the
    configuration file the CLI reads the same database and deployments from."""

    def __init__(self, tmp_path: Path, backup: AnsweringUpstream, other: AnsweringUpstream) -> None:
        self.primary = AnsweringUpstream(replies=PRIMARY).start()
        self.data = tmp_path / "data"
        self.doc = doc = config_doc(self.primary.base_url, backup.base_url, other.base_url)
        gateway = self.gateway()
        try:
            self.ids = send_history(gateway)
        finally:
            gateway.stop()  # writes the request log and the ledger
        self.config = tmp_path / "turnout.yaml"
        full = {**doc, "storage": {"data_dir": str(self.data)}}
        self.config.write_text(yaml.safe_dump(full))

    def gateway(self) -> Gateway:
        return Gateway(settings_for(self.doc, self.data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()

    def stop(self) -> None:
        self.primary.stop()


def send_history(gateway: Gateway) -> dict[str, str]:
    """The five requests, through the official SDK; the gateway's request id of each, by prompt."""
    client = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0)
    ids = {}
    for prompt, extra in (
        (CAPITAL, {}),
        (WEATHER_Q, {"tools": [WEATHER]}),
        (TIME_Q, {"tools": [TIME]}),
        (ADA, {"response_format": PERSON}),
    ):
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": prompt}], **extra
        )
        ids[prompt] = raw.headers["x-request-id"]
    with client.chat.completions.with_streaming_response.create(
        model="chat",
        messages=[{"role": "user", "content": HELLO}],
        stream=True,
        stream_options={"include_usage": True},
    ) as streamed:
        ids[HELLO] = streamed.headers["x-request-id"]
        for _ in streamed.iter_lines():
            pass
    return ids


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=ENV, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def replay(history: Logged, state: Path, *args: str) -> str:
    return cli(
        "rehearse", "replay", "-c", str(history.config), "--since", "1h", "--rate", "100/s",
        "--state", str(state), "--quiet", *args,
    )  # fmt: skip


def report_of(state: Path) -> dict[str, Any]:
    return orjson.loads(cli("rehearse", "report", "--state", str(state), "--format", "json"))
