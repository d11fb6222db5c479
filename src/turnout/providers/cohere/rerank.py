"""Cohere's v2 rerank (`POST /v2/rerank`): `{"model", "query", "documents": [text], "top_n",
"max_tokens_per_doc"}` in; `{"id", "results": [{"index", "relevance_score"}], "meta":
{"billed_units": {"search_units"}}}` out. Cohere bills search units and says how many in every
answer. Pure: the adapter sends the body built here and reads the answer with this decoder."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from turnout.domain.rerank import RerankRequest
from turnout.domain.usage import TokenCount, Usage


class _Result(msgspec.Struct, frozen=True):
    index: int
    relevance_score: float


class _Units(msgspec.Struct, frozen=True):
    search_units: TokenCount | None = None


class _Meta(msgspec.Struct, frozen=True):
    billed_units: _Units | None = None


class RerankAnswer(msgspec.Struct, frozen=True):
    results: list[_Result]
    id: str | None = None
    meta: _Meta | None = None

    def ranking(self) -> list[tuple[int, float]]:
        return [(r.index, r.relevance_score) for r in self.results]

    def usage_for(self, request: RerankRequest) -> Usage:
        """The search units Cohere billed (one per 100 documents, counted by turnout, if it left
        them out)."""
        billed = None if self.meta is None else self.meta.billed_units
        reported = None if billed is None else billed.search_units
        units = request.search_units if reported is None else reported
        return Usage(search_units=units, estimated=reported is None)


rerank_decoder = msgspec.json.Decoder(RerankAnswer)


def rerank_body(request: RerankRequest, model: str) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "query": request.query,
        "documents": request.texts(),
        "top_n": request.wanted,
    }
    if request.max_tokens_per_doc is not None:
        body["max_tokens_per_doc"] = request.max_tokens_per_doc
    return orjson.dumps(body)
