"""Cohere's v2 rerank (`POST /v2/rerank`): `{"model", "query", "documents": [text], "top_n",
"max_tokens_per_doc"}` in; `{"id", "results": [{"index", "relevance_score"}], "meta":
{"billed_units": {"search_units"}}}` out. Cohere bills search units and says how many in every
answer. Pure: the adapter sends the body built here and reads the answer with
providers/rerank.py, which holds the fields vLLM's and Jina's reranks share with Cohere's."""

from __future__ import annotations

import orjson

from turnout.domain.rerank import RerankRequest
from turnout.providers.rerank import rerank_fields


def rerank_body(request: RerankRequest, model: str) -> bytes:
    body = rerank_fields(request, model)
    if request.max_tokens_per_doc is not None:
        body["max_tokens_per_doc"] = request.max_tokens_per_doc
    return orjson.dumps(body)
