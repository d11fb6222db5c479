"""The rerank shape Cohere's `/v2/rerank` and the `/rerank` of vLLM and Jina share: the request's
common fields, and the answer read (`results` of `index` and `relevance_score`, an `id`, and Cohere's
`meta.billed_units.search_units` where the provider bills units); and the check and answer every
reranking adapter makes of a ranking."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from turnout.domain.errors import UpstreamProtocolError
from turnout.domain.rerank import RerankRequest, checked_ranking, rerank_answer
from turnout.domain.usage import TokenCount, Usage
from turnout.providers.base import RerankCall, RerankResult


def rerank_fields(request: RerankRequest, model: str) -> dict[str, Any]:
    """The request's fields that Cohere's, vLLM's and Jina's reranks share."""
    return {"model": model, "query": request.query, "documents": request.texts(), "top_n": request.wanted}


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

    def usage_for(self, request: RerankRequest, tokens: int | None = None) -> Usage:
        """What it used: the search units the provider billed (else one per 100 documents, counted
        by turnout), and `tokens` where the provider counts them."""
        billed = None if self.meta is None else self.meta.billed_units
        reported = None if billed is None else billed.search_units
        units = request.search_units if reported is None else reported
        return Usage(input_tokens=tokens or 0, search_units=units, estimated=reported is None)


rerank_decoder = msgspec.json.Decoder(RerankAnswer)


def ranked_result(
    call: RerankCall,
    provider: str,
    ranking: list[tuple[int, float]],
    *,
    answer_id: str,
    usage: Usage,
    tokens: int | None = None,
) -> RerankResult:
    """The provider's `ranking` as turnout's rerank answer; a ranking that names a document that
    was not sent (or one twice) is a protocol error."""
    ranked = checked_ranking(ranking, len(call.request.documents))
    if ranked is None:
        raise UpstreamProtocolError(f"The provider '{provider}' ranked documents that were not sent.")
    out = rerank_answer(
        call.request,
        ranked,
        answer_id=answer_id,
        model=call.model,
        search_units=usage.search_units,
        tokens=tokens,
    )
    return RerankResult(orjson.dumps(out), usage)
