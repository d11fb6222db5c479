"""Whether an alias can serve a request that is not chat: a reranker for /v1/rerank, a moderation
model for /v1/moderations (deployments declare it with `supports:`; the router keeps to them)."""

from __future__ import annotations

from typing import Literal

from turnout.domain.errors import UnsupportedFeature
from turnout.routing.catalog import Route

_WHAT = {
    "rerank": "does not rerank documents (a reranker's target declares 'supports: {rerank: true}')",
    "moderation": "does not moderate content (a moderation model's target declares "
    "'supports: {moderation: true}')",
}


def require(route: Route, task: Literal["rerank", "moderation"], asked: str) -> None:
    """A 400 naming the model unless one of the alias's deployments does `task`."""
    if not any(getattr(t.capabilities, task) for t in route.targets):
        raise UnsupportedFeature(f"The model '{asked}' {_WHAT[task]}.", param="model")
