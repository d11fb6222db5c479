"""The one-shot tasks: rerank, moderations, and media (image generation, transcription, speech),
each authorised, admitted, budgeted, routed to a deployment whose model does it and accounted the
same way (steps.py), answered once (not streamed, but for speech's audio passed through)."""

from __future__ import annotations

from typing import Any

from turnout.domain.errors import UnsupportedFeature
from turnout.domain.media import CAPABILITY, WHAT, ImageRequest, MediaApi, SpeechRequest, TranscriptionRequest
from turnout.domain.moderation import ModerationRequest, model_of, parse_moderation_request
from turnout.domain.principal import Principal
from turnout.domain.rerank import RerankRequest, parse_rerank_request
from turnout.observability.tracing import RequestTrace
from turnout.pipeline.edge import Answerer, Inbound, MediaInbound, MediaResponder
from turnout.pipeline.steps import Account, Steps
from turnout.routing.catalog import Route
from turnout.routing.generation import Generation
from turnout.routing.tasks import require
from turnout.routing.values import AttemptRecord, Call, Served
from turnout.spend.ledger import Outcome


class Tasks(Steps):
    async def rerank(self, inbound: Inbound, respond: Answerer) -> None:
        await self._served("rerank", inbound, lambda g, trace: self._rerank(g, inbound, respond, trace))

    async def moderations(self, inbound: Inbound, respond: Answerer) -> None:
        await self._served(
            "moderations", inbound, lambda g, trace: self._moderations(g, inbound, respond, trace)
        )

    async def media(self, inbound: MediaInbound, respond: MediaResponder, api: MediaApi) -> None:
        """An image generation, transcription or speech request (`api`): admitted, budgeted (at the
        most its images, seconds of audio or characters can cost), routed to a deployment whose
        model does it, and accounted by what the provider says it made."""
        await self._served(api, inbound, lambda g, trace: self._media(g, inbound, respond, api, trace))

    async def _rerank(
        self, generation: Generation, inbound: Inbound, respond: Answerer, trace: RequestTrace | None
    ) -> None:
        principal = await self.keys.resolve(inbound.credential())
        body = await inbound.json()
        request = parse_rerank_request(body)
        route = self.authorise(principal, request.model, generation.catalog)
        require(route, "rerank", request.model)
        call = _task_call(principal, route, request, body, inbound, trace, request.model)

        async def run(tally: list[AttemptRecord]) -> tuple[bytes, Served]:
            result, served = await generation.router.rerank(call, tally, inbound.request_id)
            return result.body, served

        await self._serve(inbound, respond, principal, route, "rerank", trace, run, request.search_units)

    async def _moderations(
        self, generation: Generation, inbound: Inbound, respond: Answerer, trace: RequestTrace | None
    ) -> None:
        principal = await self.keys.resolve(inbound.credential())
        body = await inbound.json()
        request = parse_moderation_request(body)
        model = model_of(request, generation.router.settings.moderation_model)
        route = self.authorise(principal, model, generation.catalog)
        require(route, "moderation", model)
        call = _task_call(principal, route, request, body, inbound, trace, model)

        async def run(tally: list[AttemptRecord]) -> tuple[bytes, Served]:
            result, served = await generation.router.moderate(call, tally)
            return result.body, served

        await self._serve(inbound, respond, principal, route, "moderations", trace, run)

    async def _media(
        self,
        generation: Generation,
        inbound: MediaInbound,
        respond: MediaResponder,
        api: MediaApi,
        trace: RequestTrace | None,
    ) -> None:
        principal = await self.keys.resolve(inbound.credential())
        request, body = await inbound.media_request()
        route = self.authorise(principal, request.model, generation.catalog)
        if not any(getattr(t.capabilities, CAPABILITY[api]) for t in route.targets):
            raise UnsupportedFeature(
                f"The model '{request.model}' does not offer {WHAT[api]}.", param="model"
            )
        call = _task_call(principal, route, request, body, inbound, trace, request.model)

        async def answer(outcome: Outcome, account: Account) -> None:
            result, outcome.served = await generation.router.media(call, outcome.tally, api)
            try:
                if result.chunks is None:
                    account(None)  # accounted for before the client can see the answer
                await respond.answer_media(result, outcome.served)
            finally:
                await result.aclose()  # (speech: the upstream's connection, however the answer ended)

        await self._accounted(inbound, principal, route, api, trace, answer, units=request.units())


def _task_call(
    principal: Principal,
    route: Route,
    request: RerankRequest | ModerationRequest | ImageRequest | TranscriptionRequest | SpeechRequest,
    body: dict[str, Any],
    inbound: Inbound | MediaInbound,
    trace: RequestTrace | None,
    model: str,
) -> Call:
    if trace is not None:
        trace.requested(model, {}, None)
    access = None if principal.allowed_models is None else principal.may_use
    return Call(route, request, body, inbound.steering(), access=access, trace=trace)
