"""Cohere's v2 rerank (`POST /v2/rerank`, what the official Cohere SDK calls) over turnout's rerank:
the request checked against Cohere's v2 shape (documents are strings; fields turnout cannot carry to
every reranker are refused by name), the answer and errors written as Cohere writes them."""

from __future__ import annotations

from typing import Any

import orjson

from turnout.domain.errors import InvalidRequest, TurnoutError

V2_FIELDS = ("model", "query", "documents", "top_n", "max_tokens_per_doc")
# Cohere's v2 fields turnout does not carry (no other reranker has them): refused, not dropped
NOT_CARRIED = ("relevant_spans", "priority")


def checked_v2(body: Any) -> Any:
    """The body, if it is a v2 rerank request turnout serves (`parse_rerank_request` checks the
    rest); a field of another shape (v1's `return_documents`, objects as documents) is a 400."""
    if not isinstance(body, dict):
        return body  # (refused by the rerank request's own parser)
    for name in body:
        if name in NOT_CARRIED:
            raise InvalidRequest(
                f"invalid request: '{name}' is not supported by this gateway's rerank.", param=name
            )
        if name not in V2_FIELDS:
            raise InvalidRequest(
                f"invalid request: unknown field '{name}' (v2 rerank takes {', '.join(V2_FIELDS)}).",
                param=str(name),
                code="unknown_parameter",
            )
    documents = body.get("documents")
    if isinstance(documents, list):
        for i, document in enumerate(documents):
            if not isinstance(document, str):
                raise InvalidRequest(
                    f"invalid request: documents[{i}] must be a string (v2 rerank takes texts).",
                    param=f"documents[{i}]",
                    code="invalid_type",
                )
    return body


def v2_answer(body: bytes) -> bytes:
    """turnout's rerank answer as Cohere's v2 one: id, results (index and relevance score, best
    first) and the search units billed in `meta`."""
    answer = orjson.loads(body)
    return orjson.dumps(
        {
            "id": answer["id"],
            "results": [
                {"index": r["index"], "relevance_score": r["relevance_score"]} for r in answer["results"]
            ],
            "meta": {"api_version": {"version": "2"}, "billed_units": answer["meta"]["billed_units"]},
        }
    )


def error_json(error: TurnoutError, request_id: str) -> bytes:
    """Cohere's error body: `{"id", "message"}`."""
    return orjson.dumps({"id": request_id, "message": error.message})
