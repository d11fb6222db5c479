"""The canonical moderation request (OpenAI's `POST /v1/moderations` shape), typed and bounded:
`input` is a string, an array of strings, or an array of multi-modal parts (`text`, `image_url`).
`model` may be left out: the gateway's configured moderation alias answers then."""

from __future__ import annotations

from typing import Any

import msgspec

from turnout.domain.errors import InvalidRequest
from turnout.domain.validation import convert

MAX_INPUTS = 1000
MAX_TOTAL_CHARACTERS = 4_000_000  # every text and image URL together


class ModerationRequest(msgspec.Struct, frozen=True):
    input: str | list[Any]
    model: str | None = None


def model_of(request: ModerationRequest, configured: str | None) -> str:
    """The model the request names, else the gateway's configured moderation alias (else a 400)."""
    model = request.model or configured
    if model is None:
        raise InvalidRequest(
            "Missing required parameter: 'model' (this gateway has no default moderation model: "
            "its operator can name one as routing.moderation_model).",
            param="model",
            code="missing_required_parameter",
        )
    return model


def parse_moderation_request(body: object) -> ModerationRequest:
    request = convert(body, ModerationRequest)
    items = request.input
    if isinstance(items, str):
        size = len(items)
    else:
        if not items:
            raise InvalidRequest("'input' must not be an empty array.", param="input", code="empty_array")
        if len(items) > MAX_INPUTS:
            raise InvalidRequest(
                f"'input' may hold at most {MAX_INPUTS} items, got {len(items)}.",
                param="input",
                code="too_many_inputs",
            )
        texts = all(isinstance(item, str) for item in items)
        size = (
            sum(len(item) for item in items) if texts else sum(_part_size(p, i) for i, p in enumerate(items))
        )
    if size > MAX_TOTAL_CHARACTERS:
        raise InvalidRequest(
            f"'input' may hold at most {MAX_TOTAL_CHARACTERS} characters, got {size}.",
            param="input",
            code="input_too_large",
        )
    return request


def _part_size(part: object, index: int) -> int:
    """The characters of one multi-modal part: `{"type": "text", "text"}` or
    `{"type": "image_url", "image_url": {"url"}}`; a 400 naming it for anything else."""
    if isinstance(part, dict):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            return len(part["text"])
        image = part.get("image_url")
        if kind == "image_url" and isinstance(image, dict) and isinstance(image.get("url"), str):
            return len(image["url"])
    raise InvalidRequest(
        f'Invalid \'input[{index}]\': expected a string, a text part ({{"type": "text", "text": ...}}) '
        'or an image part ({"type": "image_url", "image_url": {"url": ...}}), all of one kind.',
        param=f"input[{index}]",
        code="invalid_type",
    )
