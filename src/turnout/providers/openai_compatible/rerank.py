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
from turnout.domain.usage import TokenCount, Usage
from turnout.providers.request_json import request_json


class _Result(msgspec.Struct, frozen=True):
    index: int
    relevance_score: float


class _Units(msgspec.Struct, frozen=True):
    search_units: TokenCount | None = None


class _Meta(msgspec.Struct, frozen=True):
    billed_units: _Units | None = None


class _Usage(msgspec.Struct, frozen=True):
    total_tokens: TokenCount | None = None
    prompt_tokens: TokenCount | None = None


class RerankAnswer(msgspec.Struct, frozen=True):
    results: list[_Result]
    id: str | None = None
    usage: _Usage | None = None
    meta: _Meta | None = None

    def ranking(self) -> list[tuple[int, float]]:
        return [(r.index, r.relevance_score) for r in self.results]

    def usage_for(self, request: RerankRequest) -> tuple[Usage, int | None]:
        """What it used: the search units it reports (else one per 100 documents, counted by
        turnout), and its tokens where it counts them."""
        used = self.usage
        tokens = None if used is None else (used.total_tokens or used.prompt_tokens)
        billed = None if self.meta is None or self.meta.billed_units is None else self.meta.billed_units
        reported = None if billed is None else billed.search_units
        units = request.search_units if reported is None else reported
        return Usage(input_tokens=tokens or 0, search_units=units, estimated=reported is None), tokens


class ModerationAnswer(msgspec.Struct, frozen=True):
    id: str
    model: str
    results: list[dict[str, Any]]


rerank_decoder = msgspec.json.Decoder(RerankAnswer)
moderation_decoder = msgspec.json.Decoder(ModerationAnswer)


def rerank_body(request: RerankRequest, model: str) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "query": request.query,
        "documents": request.texts(),
        "top_n": request.wanted,
        "return_documents": False,  # turnout hands back the client's own documents
    }
    return orjson.dumps(body)


def moderation_body(body: dict[str, Any], model: str) -> bytes:
    return request_json({**body, "model": model})
