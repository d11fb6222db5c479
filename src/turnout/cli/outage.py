"""The demo's outage scene: traffic over two fake providers, one of which goes down mid-run and
comes back, while the client keeps getting answers and the breaker opens and closes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import click
import orjson

from turnout.config.settings import Timeouts
from turnout.providers.http.client import Endpoint, HttpClient
from turnout.providers.sse import SSEDecoder
from turnout.routing.circuit import State
from turnout.server.runner import GatewayServer

TIMEOUTS = Timeouts(connect=5, first_byte=30, idle=30, total=60)
PER_ROUND = 3  # requests sent together; the last of each round is streamed
DOWN_AFTER_ROUND = 3
LIMIT = 25.0  # seconds: the scene gives up rather than hang
VICTIM, SURVIVOR = "alpha", "beta"


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    served: dict[str, int] = field(default_factory=dict)


def _say(text: str = "", **style: Any) -> None:
    click.echo(click.style(text, **style) if style else text)


async def outage_scene(server: GatewayServer, client: HttpClient, chat: Endpoint) -> None:
    services = server.services
    router = services.pipeline.router
    fake = services.registry.fakes["fake-alpha"]
    _say(
        "\n5. An outage. demo-chat is served by two fake providers, alpha and beta (weighted 1:1).", bold=True
    )
    _say("   Requests keep flowing while alpha goes down and comes back:\n")
    tally = Tally()
    started = time.monotonic()
    phase = "up"  # up -> down -> (breaker open) -> back -> (breaker closed) -> done
    served_after_return = False
    round_no = 0
    while phase != "done":
        if time.monotonic() - started > LIMIT:
            _say(f"   (stopping the scene after {LIMIT:.0f} s)", fg="yellow")
            break
        round_no += 1
        results = await asyncio.gather(
            *(_one(client, chat, streamed=i == PER_ROUND - 1) for i in range(PER_ROUND))
        )
        for streamed, outcome in zip(range(PER_ROUND), results, strict=True):
            tally.sent += 1
            deployment, attempts, ms, ok = outcome
            kind = "stream" if streamed == PER_ROUND - 1 else "plain "
            if not ok:
                tally.failed += 1
                _say(f"   #{tally.sent:<3} {kind} FAILED ({deployment})", fg="red")
                continue
            tally.served[deployment] = tally.served.get(deployment, 0) + 1
            if phase == "back" and deployment == VICTIM:
                served_after_return = True
            note = "  <- failed over" if attempts > 1 else ""
            _say(
                f"   #{tally.sent:<3} {kind} served by {deployment:<5} "
                f"{attempts} attempt(s) {ms:5.0f} ms{note}"
            )
        state = next((s for s in router.deployments.all() if s.label == VICTIM), None)
        breaker = state.breaker.state if state is not None else State.CLOSED
        if phase == "up" and round_no == DOWN_AFTER_ROUND:
            await fake.stop()
            phase = "down"
            _say("   !! fake-alpha goes down: its server stops, connections are refused", fg="red", bold=True)
        elif phase == "down" and breaker is State.OPEN:
            _say(
                f"   !! alpha's circuit breaker opens after {state.failures if state else 0} failures: "
                "requests skip it without trying",
                fg="yellow",
                bold=True,
            )
            await fake.start()
            phase = "back"
            _say(
                "   !! fake-alpha is back up (the breaker will let a probe through in 2 s)",
                fg="green",
                bold=True,
            )
        elif phase == "back" and breaker is State.CLOSED and served_after_return:
            _say(
                "   !! alpha's probes succeeded: its breaker closed and it takes requests again",
                fg="green",
                bold=True,
            )
            phase = "done"
    served = ", ".join(f"{n} by {name}" for name, n in sorted(tally.served.items()))
    _say(
        f"\n   {tally.sent} requests, {tally.failed} failed; served {served}. "
        + ("The breaker opened and closed again." if phase == "done" else "")
    )


async def _one(client: HttpClient, chat: Endpoint, *, streamed: bool) -> tuple[str, int, float, bool]:
    """(deployment, attempts, milliseconds, complete?) of one request to demo-chat."""
    body: dict[str, Any] = {"model": "demo-chat", "messages": [{"role": "user", "content": "Status?"}]}
    if streamed:
        body["stream"] = True
    started = time.perf_counter()
    try:
        response = await client.send(chat, orjson.dumps(body), TIMEOUTS)
        deployment = (response.header(b"x-turnout-deployment") or b"-").decode()
        attempts = int(response.header(b"x-turnout-attempts") or b"0")
        if response.status != 200:
            await response.read(1 << 20)
            return f"HTTP {response.status}", attempts, 0.0, False
        if not streamed:
            data = orjson.loads(await response.read(1 << 20))
            complete = bool(data["choices"][0]["message"]["content"])
        else:
            decoder, complete = SSEDecoder(), False
            async for raw in response.iter_chunks():
                for data_, _ in decoder.feed(raw):
                    complete = complete or data_ == b"[DONE]"
    except Exception as error:  # a failed request is what the scene counts, not a crash
        return repr(error), 0, 0.0, False
    return deployment, attempts, (time.perf_counter() - started) * 1000, complete
