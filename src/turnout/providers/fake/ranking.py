"""The fake upstream's rerank and moderation answers, in the shapes an OpenAI-compatible server
gives them (vLLM's and Jina's `/rerank`, OpenAI's `/moderations`): a document scores the share of
the query's words it holds; nothing is ever flagged."""

from __future__ import annotations

import re
from typing import Any

from turnout.providers.fake.responses import count_tokens

_WORD = re.compile(r"\w+")
CATEGORIES = ("harassment", "hate", "illicit", "self-harm", "sexual", "violence")


def rerank(request: dict[str, Any], model: str, ident: str) -> dict[str, Any]:
    query, documents = request.get("query"), request.get("documents")
    if not isinstance(query, str) or not isinstance(documents, list):
        raise ValueError("a rerank request needs 'query' (a string) and 'documents' (a list)")
    texts = [_text(d) for d in documents]
    words = set(_WORD.findall(query.lower()))
    share = [len(words & set(_WORD.findall(text.lower()))) / max(1, len(words)) for text in texts]
    scored = list(enumerate(share))
    scored.sort(key=lambda pair: -pair[1])
    top = request.get("top_n")
    kept = scored[:top] if isinstance(top, int) and top > 0 else scored
    tokens = count_tokens(query) * len(texts) + sum(count_tokens(t) for t in texts)
    return {
        "id": ident,
        "model": model,
        "usage": {"total_tokens": tokens},
        "results": [{"index": i, "relevance_score": score} for i, score in kept],
    }


def _text(document: Any) -> str:
    if isinstance(document, dict):
        return str(document.get("text", ""))
    return document if isinstance(document, str) else ""


def moderation(request: dict[str, Any], model: str, ident: str) -> dict[str, Any]:
    raw = request.get("input")
    count = len(raw) if isinstance(raw, list) and raw and isinstance(raw[0], str) else 1
    result = {
        "flagged": False,
        "categories": dict.fromkeys(CATEGORIES, False),
        "category_scores": dict.fromkeys(CATEGORIES, 0.0),
        "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
    }
    return {"id": ident, "model": model, "results": [result] * count}
