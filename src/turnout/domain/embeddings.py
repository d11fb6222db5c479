"""The canonical embeddings request (OpenAI `POST /v1/embeddings` shape), typed and validated."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from turnout.domain.errors import InvalidRequest
from turnout.domain.validation import convert

MAX_INPUTS = 2048

TokenList = Annotated[list[int], msgspec.Meta(min_length=1)]
EmbeddingInput = str | list[str] | list[int] | list[TokenList]


class EmbeddingRequest(msgspec.Struct, frozen=True):
    model: str
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
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
    if isinstance(request.input, list):
        if not request.input:
            raise InvalidRequest("'input' must not be an empty array.", param="input", code="empty_array")
        if len(request.input) > MAX_INPUTS:
            raise InvalidRequest(
                f"'input' may hold at most {MAX_INPUTS} items, got {len(request.input)}.", param="input"
            )
    return request
