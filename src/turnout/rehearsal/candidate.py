"""The candidate deployment a rehearsal replays against: found by its name among the configured
deployments, sent each logged request as a stream (so time to first token is measured), with the
time to its first output and to its end, its tokens and its cost at the deployment's price."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from turnout.config.settings import ModelSettings
from turnout.domain.chat import parse_chat_request
from turnout.domain.errors import TurnoutError
from turnout.domain.usage import Usage
from turnout.rehearsal.answers import Answer, streamed_answer
from turnout.routing.catalog import Catalog, Target

MAX_BATCHES = 100_000  # a stream that never ends is cut here (its deployment's timeouts come first)


class UnknownDeployment(LookupError):
    pass


def deployments(models: Mapping[str, ModelSettings], catalog: Catalog) -> dict[str, Target]:
    """Every configured deployment by its name (a named target's name, else `provider/model`)."""
    found: dict[str, Target] = {}
    for alias, model in models.items():
        if model.is_wildcard:
            continue
        route = catalog.resolve(alias)
        for target in route.targets if route is not None else ():
            found.setdefault(target.label, target)
            found.setdefault(f"{target.provider}/{target.model}", target)
    return found


def find(models: Mapping[str, ModelSettings], catalog: Catalog, name: str) -> Target:
    known = deployments(models, catalog)
    if name not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise UnknownDeployment(f"no deployment named {name!r} (configured: {listed})")
    return known[name]


def provider_deployments(models: Mapping[str, ModelSettings], catalog: Catalog, provider: str) -> set[str]:
    """The names the request log records for a provider's deployments."""
    return {t.label for t in deployments(models, catalog).values() if t.provider == provider}


def replayed_body(request: dict[str, Any]) -> dict[str, Any]:
    """The logged request as the candidate gets it: streamed, with usage; the rest unchanged."""
    body = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


def _cost(target: Target, usage: Usage | None) -> int | None:
    if usage is None or target.price is None:
        return None
    return target.price.cost(usage)


async def ask(target: Target, request: dict[str, Any]) -> tuple[Answer, Usage | None]:
    """Send one logged request to the candidate; its answer (or the error) and its usage."""
    started = time.monotonic()
    first: float | None = None
    stream = None
    try:
        body = replayed_body({**request, "model": target.model})
        call = target.call(parse_chat_request(body), body, wants_usage=True)
        stream = await target.adapter.stream(call)
        batches = 0
        async for _ in stream:
            batches += 1
            if first is None and stream.answer.first_output_at is not None:
                first = time.monotonic() - started
            if batches >= MAX_BATCHES:
                break
    except TurnoutError as error:
        latency = round((time.monotonic() - started) * 1000)
        return Answer(ok=False, error=error.code or error.error_type, latency_ms=latency), None
    finally:
        if stream is not None:
            await stream.aclose()
    usage = stream.usage
    tokens = (0, 0) if usage is None else (usage.input_tokens, usage.output_tokens)
    answer = streamed_answer(
        stream.answer, (time.monotonic() - started, first), _cost(target, usage), *tokens
    )
    return answer, usage
