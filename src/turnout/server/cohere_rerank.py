"""`POST /v2/rerank`: Cohere's v2 rerank, the path the official Cohere SDK calls, served by the
same pipeline as `/v1/rerank` (routed, limited, budgeted and recorded alike) in Cohere's request,
answer and error shapes (inbound/cohere_rerank.py)."""

from __future__ import annotations

from typing import Any

from turnout.inbound.cohere_rerank import checked_v2, error_json, v2_answer
from turnout.routing.values import Served
from turnout.server.exchange import Exchange, WrappedExchange


def cohere_errors(x: Exchange) -> None:
    x.render_error = lambda error: error_json(error, x.request_id)


class CohereRerankExchange(WrappedExchange):
    """The pipeline's Inbound and Responder for one /v2/rerank request."""

    api = "rerank"

    def __init__(self, x: Exchange) -> None:
        super().__init__(x)
        cohere_errors(x)

    async def json(self) -> Any:
        return checked_v2(await self.x.json())

    def native(self) -> None:
        return None

    async def answer(self, body: bytes, served: Served) -> None:
        await self.x.answer(v2_answer(body), served)
