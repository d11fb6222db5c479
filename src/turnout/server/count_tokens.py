"""`POST /v1/messages/count_tokens`: Anthropic's token counting in front of every provider. A model
with an Anthropic-format deployment has the request counted by Anthropic itself (exact, the
request passed on whole with the client's beta headers); any other model's is counted by turnout:
o200k_base over the prompt as it would be translated, its framing and the tool definitions
(`x-turnout-token-count: estimated`). Authenticated, authorised and admitted like a message
(the overload gate, then the key's request limits: rpm, rpd, parallel); free, so it reserves no
tokens, is not budgeted and is not written to the ledger. Errors and rate-limit headers in
Anthropic's format."""

from __future__ import annotations

from typing import Any

import orjson

from turnout.domain.chat import counted_prompt_tokens, parse_chat_request
from turnout.domain.errors import InvalidRequest, UpstreamError
from turnout.domain.rate_limits import Quota
from turnout.domain.tokens import count_tokens
from turnout.inbound.anthropic_messages import error_json, to_openai
from turnout.pipeline import Pipeline
from turnout.providers.base import CountsTokens, NativeRequest
from turnout.routing.catalog import Route
from turnout.server.exchange import Exchange
from turnout.server.messages import asks_beta, passed_headers

ESTIMATED = [(b"x-turnout-token-count", b"estimated")]
EXACT = [(b"x-turnout-token-count", b"exact")]


async def count_message_tokens(pipeline: Pipeline, x: Exchange) -> None:
    x.render_error = lambda error: error_json(error, x.request_id)
    x.quota_headers = Quota.anthropic_headers
    principal = await pipeline.keys.resolve(x.credential())
    body = await x.json()
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", param="body")
    native_only: list[str] = []
    # counting needs no max_tokens: the translation checks the rest of the request as a message's
    translated = to_openai({**body, "max_tokens": 1}, native_only)
    route = pipeline.authorise(principal, translated["model"])
    ticket = await pipeline.admit_uncharged(x, principal, route)
    try:
        await _count(x, body, translated, native_only, route)
    finally:
        ticket.settle(0)


async def _count(
    x: Exchange,
    body: dict[str, Any],
    translated: dict[str, Any],
    native_only: list[str],
    route: Route,
) -> None:
    """The count: Anthropic's own for an Anthropic-format deployment, else turnout's estimate."""
    native = NativeRequest("anthropic", body, passed_headers(x), tuple(native_only), beta=asks_beta(x))
    for target in route.targets:
        adapter = target.adapter
        if target.capabilities.native_wire != "anthropic" or not isinstance(adapter, CountsTokens):
            continue
        try:
            answer = await adapter.count_tokens(native, target.model, target.timeouts)
        except UpstreamError:
            continue  # the next Anthropic deployment, else turnout's own count
        await x.send_json(200, answer, EXACT)
        return
    await x.send_json(200, orjson.dumps({"input_tokens": estimated_tokens(translated)}), ESTIMATED)


def estimated_tokens(translated: dict[str, Any]) -> int:
    """turnout's count of a translated request's prompt: its messages with the chat format's
    framing (as for an answer with no usage reported) and its tool definitions as JSON."""
    request = parse_chat_request(translated)
    tools = translated.get("tools")
    definitions = [orjson.dumps(tools).decode()] if tools else []
    return counted_prompt_tokens(request) + count_tokens(definitions)
