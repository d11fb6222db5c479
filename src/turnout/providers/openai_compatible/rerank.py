"""Reranking and moderation on OpenAI-format servers.

Rerank is not OpenAI's own API: it is the `POST /rerank` that vLLM and Jina serve (Jina's shape,
which Cohere's v1 also had): `{"model", "query", "documents": [text], "top_n",
"return_documents"}` in, `{"id", "model", "usage": {"total_tokens"}, "results": [{"index",
"relevance_score", "document"}]}` out (a Cohere-style `meta.billed_units.search_units` is read
where a server reports it). Moderation is OpenAI's `POST /moderations`, passed on with the
deployment's model and its answer checked to be a moderation.

Pure: the adapter sends the bodies built here and reads the answers with these decoders.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from turnout.domain.rerank import RerankRequest
from turnout.domain.usage import TokenCount
from turnout.providers import rerank as shared
from turnout.providers.request_json import request_json


class _Usage(msgspec.Struct, frozen=True):
    total_tokens: TokenCount | None = None
    prompt_tokens: TokenCount | None = None


class RerankAnswer(shared.RerankAnswer, frozen=True):
    """Cohere's shape (providers/rerank.py) with the tokens vLLM and Jina count."""

    usage: _Usage | None = None

    @property
    def tokens(self) -> int | None:
        return None if self.usage is None else (self.usage.total_tokens or self.usage.prompt_tokens)


class ModerationAnswer(msgspec.Struct, frozen=True):
    id: str
    model: str
    results: list[dict[str, Any]]


rerank_decoder = msgspec.json.Decoder(RerankAnswer)
moderation_decoder = msgspec.json.Decoder(ModerationAnswer)


def rerank_body(request: RerankRequest, model: str) -> bytes:
    # turnout hands back the client's own documents
    return orjson.dumps({**shared.rerank_fields(request, model), "return_documents": False})


def moderation_body(body: dict[str, Any], model: str) -> bytes:
    return request_json({**body, "model": model})
