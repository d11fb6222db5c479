"""The canonical embeddings request (OpenAI `POST /v1/embeddings` shape), typed and validated."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from turnout.domain.errors import InvalidRequest
from turnout.domain.validation import convert

MAX_INPUTS = 2048


class EmbeddingRequest(msgspec.Struct, frozen=True):
    """`input` is a string, or a list of strings, of token ids, or of token-id lists (msgspec cannot
    express a union of list types, so the list's shape is checked in `parse_embedding_request`)."""

    model: str
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None
    user: str | None = None

    @property
    def input_count(self) -> int:
        if isinstance(self.input, str):
            return 1
        if self.input and isinstance(self.input[0], int):
            return 1  # one tokenised input
        return len(self.input)


def parse_embedding_request(body: object) -> EmbeddingRequest:
    request = convert(body, EmbeddingRequest)
    items = request.input
    if isinstance(items, list):
        if not items:
            raise InvalidRequest("'input' must not be an empty array.", param="input", code="empty_array")
        if len(items) > MAX_INPUTS:
            raise InvalidRequest(
                f"'input' may hold at most {MAX_INPUTS} items, got {len(items)}.", param="input"
            )
        if not (_all(items, _is_text) or _all(items, _is_token) or _all(items, _is_token_list)):
            raise InvalidRequest(
                "Invalid type for 'input': expected a string, an array of strings, an array of token ids, "
                "or an array of non-empty arrays of token ids.",
                param="input",
                code="invalid_type",
            )
    return request


def _all(items: list[Any], check: Any) -> bool:
    return all(check(item) for item in items)


def _is_text(item: object) -> bool:
    return isinstance(item, str)


def _is_token(item: object) -> bool:
    return type(item) is int


def _is_token_list(item: object) -> bool:
    return isinstance(item, list) and bool(item) and all(type(t) is int for t in item)
