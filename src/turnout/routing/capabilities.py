"""Can a deployment serve a request? Features it lacks, whether the request fits its context
window, and whether its model can give an answer as long as asked. Used to refuse a request no
deployment of its alias can serve (400 naming the feature) and to skip fallbacks that could not
carry it."""

from __future__ import annotations

from dataclasses import dataclass

from turnout.domain.chat import ChatRequest, estimated_prompt_tokens, message_has_images
from turnout.providers.base import Capabilities


@dataclass(frozen=True, slots=True)
class Need:
    """Something a request needs: what to call it in an error, and the parameter that asks for it."""

    feature: str
    param: str


def needs(request: ChatRequest) -> tuple[Need, ...]:
    """The features `request` needs beyond plain text chat."""
    found: list[Need] = []
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        found.append(Need("structured outputs (response_format type 'json_schema')", "response_format"))
    if request.tools:
        found.append(Need("tools", "tools"))
    if request.stream:
        found.append(Need("streaming", "stream"))
    if any(message_has_images(m) for m in request.messages):
        found.append(Need("images", "messages"))
    return tuple(found)


def lacks(caps: Capabilities, need: Need) -> bool:
    if need.param == "response_format":
        return not caps.json_schema
    if need.param == "tools":
        return not caps.tools
    if need.param == "stream":
        return not caps.streaming
    return not caps.images


CHAT = Need("chat (it is an image or audio model)", "model")


def first_unmet(caps: Capabilities, wanted: tuple[Need, ...]) -> Need | None:
    if not caps.chat:
        return CHAT
    for need in wanted:
        if lacks(caps, need):
            return need
    return None


def fits_output(max_output_tokens: int | None, request: ChatRequest) -> bool:
    """False when the request asks for a longer answer than the deployment's model can give."""
    wanted = request.output_token_limit
    return max_output_tokens is None or wanted is None or wanted <= max_output_tokens


def fits_context(context_window: int | None, request: ChatRequest) -> bool:
    """False only when the request clearly cannot fit: its estimated prompt (a lower bound, about
    four characters a token) plus its output limit exceed the deployment's known window."""
    if context_window is None:
        return True
    return estimated_prompt_tokens(request) + (request.output_token_limit or 0) <= context_window
