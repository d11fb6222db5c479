"""The canonical rerank request (Cohere's and Jina's `POST /v1/rerank` shape), typed and bounded,
and the answer turnout gives for it whatever provider ranked the documents."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from turnout.domain.errors import InvalidRequest, UnsupportedFeature
from turnout.domain.validation import convert

MAX_DOCUMENTS = 1000  # Amazon Bedrock's and Cohere's documented ceiling for one call
MAX_QUERY_CHARACTERS = 100_000
MAX_TOTAL_CHARACTERS = 4_000_000  # the query and every document together
DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere and Bedrock: one search unit is a query with up to 100 documents


class RerankRequest(msgspec.Struct, frozen=True):
    """`documents` are strings or objects with a `text` string (other fields are handed back with
    the document when `return_documents` asks for it)."""

    model: str
    query: str
    documents: list[Any]
    top_n: Annotated[int, msgspec.Meta(ge=1)] | None = None
    return_documents: bool = False
    max_tokens_per_doc: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None

    def texts(self) -> list[str]:
        """The documents' texts, in order (checked by `parse_rerank_request`)."""
        return [d if isinstance(d, str) else d["text"] for d in self.documents]

    @property
    def wanted(self) -> int:
        """How many results the client asked for: `top_n`, at most every document."""
        count = len(self.documents)
        return count if self.top_n is None else min(self.top_n, count)

    @property
    def search_units(self) -> int:
        """The search units the request takes where its provider does not say: one per 100
        documents (Cohere's and Amazon Bedrock's definition)."""
        return -(-len(self.documents) // DOCUMENTS_PER_SEARCH_UNIT)


def parse_rerank_request(body: object) -> RerankRequest:
    """The request, checked; a field it does not know is refused, not dropped (no provider would
    be told of it)."""
    if isinstance(body, dict):
        unknown = sorted(str(name) for name in body if name not in RerankRequest.__struct_fields__)
        if unknown:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {unknown[0]} (a rerank request takes "
                f"{', '.join(RerankRequest.__struct_fields__)}).",
                param=unknown[0],
                code="unknown_parameter",
            )
    request = convert(body, RerankRequest)
    documents = request.documents
    if not documents:
        raise InvalidRequest("'documents' must not be an empty array.", param="documents", code="empty_array")
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidRequest(
            f"'documents' may hold at most {MAX_DOCUMENTS} documents, got {len(documents)}.",
            param="documents",
            code="too_many_documents",
        )
    if not request.query.strip():
        raise InvalidRequest("'query' must not be empty.", param="query")
    if len(request.query) > MAX_QUERY_CHARACTERS:
        raise InvalidRequest(f"'query' may be at most {MAX_QUERY_CHARACTERS} characters long.", param="query")
    total = len(request.query)
    for i, document in enumerate(documents):
        text = document if isinstance(document, str) else _text_of(document, i)
        total += len(text)
    if total > MAX_TOTAL_CHARACTERS:
        raise InvalidRequest(
            f"The query and documents may hold at most {MAX_TOTAL_CHARACTERS} characters together, "
            f"got {total}.",
            param="documents",
            code="documents_too_large",
        )
    return request


def _text_of(document: object, index: int) -> str:
    text = document.get("text") if isinstance(document, dict) else None
    if not isinstance(text, str):
        raise InvalidRequest(
            f"Invalid 'documents[{index}]': expected a string or an object with a 'text' string.",
            param=f"documents[{index}]",
            code="invalid_type",
        )
    return text


def rerank_answer(
    request: RerankRequest,
    ranked: list[tuple[int, float]],
    *,
    answer_id: str,
    model: str,
    search_units: int,
    tokens: int | None,
) -> dict[str, Any]:
    """The answer: `ranked` (document index, relevance score), best first, cut to `top_n`, each
    with its document when `return_documents` asks; the search units in Cohere's `meta`, and a
    usage object (Jina's `total_tokens` where the provider counted tokens)."""
    results: list[dict[str, Any]] = []
    for index, score in ranked[: request.wanted]:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if request.return_documents:
            document = request.documents[index]
            item["document"] = {"text": document} if isinstance(document, str) else document
        results.append(item)
    usage: dict[str, int] = {"search_units": search_units}
    if tokens is not None:
        usage["total_tokens"] = tokens
    return {
        "id": answer_id,
        "model": model,
        "results": results,
        "meta": {"billed_units": {"search_units": search_units}},
        "usage": usage,
    }


def checked_ranking(ranked: list[tuple[int, float]], documents: int) -> list[tuple[int, float]] | None:
    """`ranked` best first, or None when it names a document that was not sent (or one twice)."""
    seen = set()
    for index, _ in ranked:
        if not 0 <= index < documents or index in seen:
            return None
        seen.add(index)
    return sorted(ranked, key=lambda pair: -pair[1])


def refuse_document_limit(request: RerankRequest, provider: str) -> None:
    """`max_tokens_per_doc` is Cohere's: a provider that cannot be told it refuses it (a 400)."""
    if request.max_tokens_per_doc is not None:
        raise UnsupportedFeature(
            f"'max_tokens_per_doc' is Cohere's: the provider '{provider}' cannot be given it.",
            param="max_tokens_per_doc",
        )
