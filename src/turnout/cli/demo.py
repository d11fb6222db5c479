"""`turnout demo`: a gateway with a local fake provider, and a tour of it over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from typing import Any

import click
import orjson

from turnout.cli.outage import outage_scene
from turnout.cli.serve import _event_loop_runner
from turnout.config.settings import Settings, Timeouts
from turnout.providers.config_loader import build_settings
from turnout.providers.http.client import Endpoint, HttpClient
from turnout.providers.sse import SSEDecoder
from turnout.server.runner import GatewayServer, serve

DEMO_TIMEOUTS = Timeouts(connect=5, first_byte=30, idle=30, total=60)
QUESTION = "What does a railway turnout do?"


def demo_settings(port: int, data_dir: str) -> Settings:
    doc: dict[str, Any] = {
        "server": {"port": port},
        "storage": {"data_dir": data_dir},
        # quick breakers, so that the outage scene shows one open and close within seconds
        "routing": {"breaker": {"consecutive_failures": 3, "open_for": "2s", "close_after": 2}},
        "providers": {
            "fake-alpha": {
                "type": "fake",
                "fake": {"latency": "150ms", "chunks": 10, "chunk_gap": "60ms", "models": ["alpha-1"]},
            },
            "fake-beta": {
                "type": "fake",
                "fake": {"latency": "120ms", "chunks": 10, "chunk_gap": "50ms", "models": ["beta-1"]},
            },
        },
        "models": {
            "demo-chat": {
                "strategy": "weighted",
                "targets": [
                    {"provider": "fake-alpha", "model": "alpha-1", "name": "alpha"},
                    {"provider": "fake-beta", "model": "beta-1", "name": "beta"},
                ],
            },
            "fake/*": {"provider": "fake-alpha", "model": "*"},
        },
    }
    return build_settings(doc, {}, source="demo (built in)")


def _free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def run(*, port: int, exit_after: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="turnout-demo-") as data_dir:
        settings = demo_settings(_free(port), data_dir)
        tasks: set[asyncio.Task[None]] = set()

        def started(server: GatewayServer) -> None:
            task = asyncio.get_running_loop().create_task(_tour(server, exit_after))
            tasks.add(task)

        _event_loop_runner()(serve(settings, on_started=started))  # type: ignore[operator]


def python_snippet(base: str, key: str) -> str:
    """The SDK example, unindented: pasted into `python3` (or saved as a file), it runs."""
    return (
        "from openai import OpenAI\n"
        f'client = OpenAI(base_url="{base}", api_key="{key}")\n'
        'reply = client.chat.completions.create(model="demo-chat", '
        'messages=[{"role": "user", "content": "Hello!"}])\n'
        "print(reply.choices[0].message.content, reply.usage)\n"
    )


def _say(text: str = "", **style: Any) -> None:
    click.echo(click.style(text, **style) if style else text)


async def _tour(server: GatewayServer, exit_after: bool) -> None:
    key = server.services.master_key.generated or ""
    base = f"http://127.0.0.1:{server.port}/v1"
    _say("turnout demo: a gateway in front of a local fake provider is running.\n", bold=True)
    _say(f"  base URL  {base}\n  API key   {key}\n")
    _say("Try it yourself (in another terminal):\n", bold=True)
    _say(
        f"  curl {base}/chat/completions \\\n"
        f'    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\\n'
        """    -d '{"model": "demo-chat", "messages": [{"role": "user", "content": "Hello!"}]}'\n"""
    )
    _say("Python (`pip install openai`), to paste into `python3` as it is:\n")
    _say(python_snippet(base, key))
    _say(
        "Models: demo-chat, and fake/<name>?<directives> to script the fake provider, e.g.\n"
        "  fake/x?latency=2s   fake/x?fail=429&retry_after=1   fake/x?fail=truncate&after=3\n"
    )
    client = HttpClient()
    headers = [("authorization", f"Bearer {key}"), ("content-type", "application/json")]
    chat = Endpoint("POST", f"{base}/chat/completions", headers)
    try:
        _say("The gateway answering now:\n", bold=True)
        await _plain(client, chat)
        await _streamed(client, chat)
        await _tools(client, chat)
        await _failure(client, chat)
        totals = server.services.budgets.totals.values()
        used = sum(t.input_tokens + t.output_tokens for t in totals)
        _say(f"\nTokens accounted for so far: {used} across {sum(t.requests for t in totals)} requests.")
        await outage_scene(server, client, chat)
    except Exception as error:  # the tour is a demonstration: report, do not hang
        _say(f"\nThe demonstration failed: {error!r}", fg="red")
        server.request_stop()
        raise
    finally:
        await client.aclose()
    if exit_after:
        server.request_stop()
    else:
        _say("\nThe gateway keeps running for you to try; press Ctrl+C to stop it.", bold=True)


async def _post(
    client: HttpClient, chat: Endpoint, body: dict[str, Any]
) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    response = await client.send(chat, orjson.dumps(body), DEMO_TIMEOUTS)
    data = orjson.loads(await response.read(1 << 20))
    return response.status, data, (time.perf_counter() - started) * 1000


def _usage(usage: dict[str, Any] | None) -> str:
    if not usage:
        return "no usage reported"
    return f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens"


async def _plain(client: HttpClient, chat: Endpoint) -> None:
    _say("1. A chat completion")
    status, data, ms = await _post(
        client, chat, {"model": "demo-chat", "messages": [{"role": "user", "content": QUESTION}]}
    )
    _say(f"   -> {data['choices'][0]['message']['content']!r}")
    _say(f"      HTTP {status} in {ms:.0f} ms, {_usage(data.get('usage'))}")


async def _streamed(client: HttpClient, chat: Endpoint) -> None:
    _say("2. The same, streamed (each chunk printed as it arrives)")
    body = {
        "model": "demo-chat",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": QUESTION}],
    }
    started = time.perf_counter()
    response = await client.send(chat, orjson.dumps(body), DEMO_TIMEOUTS)
    decoder, first, chunks, usage = SSEDecoder(), 0.0, 0, None
    click.echo("   -> ", nl=False)
    async for raw in response.iter_chunks():
        for data, _ in decoder.feed(raw):
            if data == b"[DONE]":
                continue
            chunk = orjson.loads(data)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    first = first or (time.perf_counter() - started) * 1000
                    chunks += 1
                    click.echo(text, nl=False)
    _say(f"\n      first token after {first:.0f} ms, {chunks} chunks, {_usage(usage)}")


async def _tools(client: HttpClient, chat: Endpoint) -> None:
    _say("3. A tool call")
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    _, data, _ = await _post(
        client,
        chat,
        {
            "model": "demo-chat",
            "tools": [tool],
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        },
    )
    call = data["choices"][0]["message"]["tool_calls"][0]["function"]
    _say(
        f"   -> the model calls {call['name']}({call['arguments']}); "
        f"finish_reason={data['choices'][0]['finish_reason']}"
    )


async def _failure(client: HttpClient, chat: Endpoint) -> None:
    _say("4. A provider outage, as a client sees it (the fake provider answers 503)")
    status, data, _ = await _post(
        client, chat, {"model": "fake/alpha-1?fail=503", "messages": [{"role": "user", "content": QUESTION}]}
    )
    error = data["error"]
    _say(f"   -> HTTP {status} {error['code']}: {error['message']}")
