"""The pipeline's front door: chat completions (in every client API), embeddings and the
providers' pass-through, served with the steps every request takes (steps.py); the one-shot tasks
(rerank, moderations, media) are in tasks.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from turnout.domain.chat import ChatRequest, parse_chat_request
from turnout.domain.embeddings import parse_embedding_request
from turnout.domain.errors import (
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RouteNotFound,
    UnsupportedFeature,
)
from turnout.domain.principal import Principal
from turnout.domain.request_features import request_features
from turnout.observability.tracing import RequestTrace
from turnout.pipeline.edge import Answerer, Inbound, PassthroughInbound, PassthroughResponder, Responder
from turnout.pipeline.tasks import Tasks
from turnout.presets.registry import PREFIX as PRESET_PREFIX
from turnout.presets.registry import Preset
from turnout.providers.base import NativeRequest
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.passage import DROPPED_ANSWER_HEADERS, USAGE_BODY_LIMIT, Passage
from turnout.request_logs.capture import Answer, Captured
from turnout.routing.capabilities import first_unmet, needs
from turnout.routing.catalog import PASSTHROUGH_PREFIX, Catalog, Route
from turnout.routing.generation import Generation
from turnout.routing.relay import RelayStream
from turnout.routing.values import AttemptRecord, Call, Served
from turnout.spend.billing import PresetCharge
from turnout.spend.ledger import Outcome


class Pipeline(Tasks):
    async def chat_completion(self, inbound: Inbound, respond: Responder) -> None:
        await self._served(
            "chat", inbound, lambda g, trace: self._chat_completion(g, inbound, respond, trace)
        )

    async def _chat_completion(
        self, generation: Generation, inbound: Inbound, respond: Responder, trace: RequestTrace | None
    ) -> None:
        principal = await self.keys.resolve(inbound.credential())
        body = asked = await inbound.json()  # `asked`: as the client sent it (for the request log)
        preset = self._preset(principal, body)
        if preset is not None:
            body = preset.apply(body)  # (a preset's prompt is its team's: never in another's log)
        request = parse_chat_request(body)
        catalog = generation.catalog
        route = (
            self.authorise(principal, request.model, catalog)
            if preset is None
            else self._preset_route(preset, catalog)
        )
        native = None if preset is not None else inbound.native()  # a preset rewrote the request
        check_capabilities(route, request, native)
        if inbound.api == "messages" and _over_ceiling(route, request) and _all_translated(route, native):
            request, body = _capped(route, request, body)
        check_output_limit(route, request, inbound.api)
        if trace is not None:
            sampling = {"temperature": request.temperature, "top_p": request.top_p}
            sampling["max_tokens"] = request.output_token_limit
            trace.requested(request.model, sampling, body.get("messages"))
        call = Call(
            route,
            request,
            body,
            inbound.steering(),
            wants_usage=request.wants_usage_in_stream,
            native=native,
            access=None if principal.allowed_models is None else principal.may_use,
            trace=trace,
            team=principal.team_id,
            request_id=inbound.request_id,
        )
        self.spend.admit()  # the ledger can record it: else 503, before anything is spent
        ticket, reservation, hold = await self._admit(inbound, principal, route, request)
        outcome = Outcome()
        outcome.service_tier = request.service_tier
        outcome.features = request_features(request)
        if preset is not None:
            outcome.preset = PresetCharge(preset.name, preset.team_id, preset.share)
        stream = bool(request.stream)
        account = self._accountant(
            outcome, inbound.request_id, inbound.api, principal, route, stream, ticket, trace
        )
        logged = self.request_log is not None and self.request_log.wanted(principal)
        answer: Answer = None
        try:
            if stream:
                relay, outcome.served = await generation.router.stream(call, outcome.tally)
                relay.accounted_by(account)
                answer = relay
                await respond.stream(relay, outcome.served)
            else:
                result, outcome.served = await generation.router.complete(call, outcome.tally)
                account(None, result)  # accounted for before the client can see the answer
                answer = result
                if result.native is not None:
                    await respond.answer_native(result.native, outcome.served)
                else:
                    await respond.answer_chat(result, outcome.served)
        except BaseException as error:
            outcome.failed(error, self.router.in_flight.cancelled())
            raise
        finally:
            account(None)
            self._settle(outcome, reservation, hold, ticket)
            if logged:
                self._log(inbound, principal, route, asked, outcome, answer, stream)
            mirror = self.mirrors.by_alias.get(route.alias)  # (mirroring off: an empty dict)
            if mirror is not None:  # a shadow to the candidate, once the client has its answer
                mirror.offer(request, body, inbound.request_id, inbound.api, outcome.features)

    def _log(
        self,
        inbound: Inbound,
        principal: Principal,
        route: Route,
        body: Any,
        outcome: Outcome,
        answer: Answer,
        stream: bool,
    ) -> None:
        """Hand the request to the request log (a queue append: redacted and written later)."""
        assert self.request_log is not None
        served = outcome.served
        target = None if served is None else served.target
        status, reason = outcome.status, outcome.reason
        last = answer.last_attempt if isinstance(answer, RelayStream) else None
        if status == 200 and last is not None and last.status > 200:  # broken after its first byte
            status, reason = last.status, last.reason
        self.request_log.capture(
            Captured(
                request_id=inbound.request_id,
                at=outcome.at,
                api=inbound.api,
                key_id=principal.key_id,
                team_id=principal.team_id,
                user_id=principal.spender,
                alias=route.alias,
                model=None if target is None else target.model,
                deployment=None if target is None else target.label,
                stream=stream,
                status=status,
                reason=reason,
                latency_ms=round((time.perf_counter() - outcome.started) * 1000),
                request=body,
                answer=answer,  # (a stream cut short: what the client was sent)
                usage=outcome.usage,
            )
        )

    def _preset(self, principal: Principal, body: Any) -> Preset | None:
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model.startswith(PRESET_PREFIX):
            return None
        preset = self.presets.get(model)
        if preset is None or not principal.may_use(model):
            raise ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return preset

    def _preset_route(self, preset: Preset, catalog: Catalog) -> Route:
        route = catalog.resolve(preset.alias)
        if route is None:  # the alias left the configuration after the preset was published
            raise ModelNotFound(f"The model 'preset/{preset.name}' is not available.", param="model")
        return route

    async def embeddings(self, inbound: Inbound, respond: Answerer) -> None:
        await self._served(
            "embeddings", inbound, lambda g, trace: self._embeddings(g, inbound, respond, trace)
        )

    async def _embeddings(
        self, generation: Generation, inbound: Inbound, respond: Answerer, trace: RequestTrace | None
    ) -> None:
        principal = await self.keys.resolve(inbound.credential())
        body = await inbound.json()
        request = parse_embedding_request(body)
        route = self.authorise(principal, request.model, generation.catalog)
        if not any(t.capabilities.embeddings and t.capabilities.chat for t in route.targets):
            raise UnsupportedFeature(f"The model '{request.model}' does not offer embeddings.", param="model")
        access = None if principal.allowed_models is None else principal.may_use
        if trace is not None:
            trace.requested(request.model, {}, None)
        call = Call(
            route,
            request,
            body,
            inbound.steering(),
            access=access,
            trace=trace,
            team=principal.team_id,
            request_id=inbound.request_id,
        )

        async def run(tally: list[AttemptRecord]) -> tuple[bytes, Served]:
            result, served = await generation.router.embed(call, tally)
            return result.body, served

        await self._serve(inbound, respond, principal, route, "embeddings", trace, run)

    async def passthrough(
        self, inbound: PassthroughInbound, respond: PassthroughResponder, provider: str, path: str
    ) -> None:
        generation = self.current
        generation.enter()
        try:
            await self._passthrough(generation, inbound, respond, provider, path)
        finally:
            generation.leave()

    async def _passthrough(
        self,
        generation: Generation,
        inbound: PassthroughInbound,
        respond: PassthroughResponder,
        provider: str,
        path: str,
    ) -> None:
        """A provider API turnout does not model, passed on (providers/passage.py): admitted,
        budgeted and recorded like a model call — a ledger entry under `passthrough/<provider>`,
        priced from the usage a JSON answer reports."""
        principal = await self.keys.resolve(inbound.credential())
        catalog = generation.catalog
        passage = catalog.passage(provider)
        if passage is None or not principal.may_use(PASSTHROUGH_PREFIX + provider):
            raise RouteNotFound(f"There is no pass-through to '{provider}', or this key may not use it.")
        if not passage.allows(path) or not passage.query_allowed(inbound.query):
            raise PermissionDenied(
                f"The pass-through to '{provider}' may not reach '{path}' (allowed: "
                f"{', '.join(passage.prefixes)}).",
                code="passthrough_path_not_allowed",
            )
        body = await inbound.body()
        route = catalog.passthrough_route(passage)
        self.spend.admit()
        ticket, reservation, hold = await self._admit(inbound, principal, route)
        outcome = Outcome()
        account = self._accountant(
            outcome, inbound.request_id, "passthrough", principal, route, False, ticket
        )
        record = AttemptRecord(1, catalog.passthrough_target(passage, None))
        outcome.tally.append(record)
        try:
            response = await passage.send(inbound.method, path, inbound.query, inbound.headers(), body)
            try:
                await self._pass_back(passage, catalog, response, record, outcome, account, respond)
            finally:
                response.release()
        except BaseException as error:
            outcome.failed(error, self.router.in_flight.cancelled())
            record.ended(outcome.status, reason=outcome.reason)
            raise
        finally:
            account(None)
            self._settle(outcome, reservation, hold, ticket)

    async def _pass_back(
        self,
        passage: Passage,
        catalog: Catalog,
        response: UpstreamResponse,
        record: AttemptRecord,
        outcome: Outcome,
        account: Callable[[RelayStream | None], None],
        respond: PassthroughResponder,
    ) -> None:
        """The upstream's answer to the client, as it came: a JSON answer read whole first (for the
        usage it reports, recorded before the client has it), anything else streamed through."""
        status = response.status
        outcome.status = status
        reason = None if status < 400 else "passthrough_upstream_error"
        outcome.reason = reason
        headers = [(n, v) for n, v in response.headers if n not in DROPPED_ANSWER_HEADERS]
        kind = response.header(b"content-type") or b""
        held: list[bytes] = []
        if kind.startswith(b"application/json") or b"+json" in kind:
            size = 0
            while size <= USAGE_BODY_LIMIT and (chunk := await response.next_chunk()) is not None:
                held.append(chunk)
                size += len(chunk)
            if size <= USAGE_BODY_LIMIT:  # all of it: its usage read, recorded, then sent
                data = b"".join(held)
                reported = passage.reported(data)
                record.target = catalog.passthrough_target(passage, reported.model)
                record.ended(status, reported.usage, reason)
                if status < 400:
                    outcome.served = Served(record.target, record=record)
                account(None)
                await respond.start(status, headers)
                await respond.write(data, False)
                return
        await respond.start(status, headers)
        for chunk in held:
            await respond.write(chunk, True)
        while (chunk := await response.next_chunk()) is not None:
            await respond.write(chunk, True)
        record.ended(status, None, reason)
        if status < 400:
            outcome.served = Served(record.target, record=record)
        account(None)
        await respond.write(b"", False)


# The parameter that caps an answer's length, as each inbound API names it.
OUTPUT_PARAMS = {"messages": "max_tokens", "responses": "max_output_tokens"}


def _over_ceiling(route: Route, request: ChatRequest) -> bool:
    wanted, largest = request.output_token_limit, route.output_ceiling
    return wanted is not None and largest is not None and wanted > largest


def _all_translated(route: Route, native: NativeRequest | None) -> bool:
    """Will every deployment get the request translated (none takes its native format)?"""
    return native is None or not any(t.capabilities.takes(native.wire) for t in route.targets)


def _capped(route: Route, request: ChatRequest, body: dict[str, Any]) -> tuple[ChatRequest, dict[str, Any]]:
    """Anthropic's format requires `max_tokens`, and clients (Claude Code) set it to the most their
    Claude model can write: a ceiling, not a wish. Translated for models that write less (an alias
    with no Anthropic deployment), it is lowered to the most any deployment of the alias can give,
    rather than refused."""
    ceiling = route.output_ceiling
    return msgspec.structs.replace(request, max_tokens=ceiling), {**body, "max_tokens": ceiling}


def check_output_limit(route: Route, request: ChatRequest, api: str) -> None:
    """A request asking for a longer answer than every deployment of its model can give is refused,
    naming the parameter and the largest limit there is (deployments with a lower limit than the
    request's are skipped by the router; one with no known limit can take any)."""
    wanted = request.output_token_limit
    largest = route.output_ceiling
    if wanted is None or largest is None or wanted <= largest:
        return
    chat_param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    param = OUTPUT_PARAMS.get(api, chat_param)
    raise InvalidRequest(
        f"'{param}' is {wanted}, but the model '{request.model}' can give at most {largest} tokens in "
        "an answer.",
        param=param,
        code="max_tokens_too_large",
    )


def check_capabilities(route: Route, request: ChatRequest, native: NativeRequest | None = None) -> None:
    """A request needing something no deployment of its model can do is refused up front, naming
    the feature (deployments that lack it are skipped by the router)."""
    if not route.serves_chat:
        raise UnsupportedFeature(
            f"The model '{request.model}' is not a chat model: a reranker, a moderation model, or an image "
            "or audio model serves only its own endpoint (/v1/rerank, /v1/moderations, /v1/images/..., "
            "/v1/audio/...).",
            param="model",
        )
    if (
        native is not None
        and native.requires
        and not any(t.capabilities.takes(native.wire) for t in route.targets)
    ):
        name = native.requires[0]
        raise UnsupportedFeature(
            f"The model '{request.model}' has no {native.wire.capitalize()}-format deployment, and only "
            f"those can carry '{name}'.",
            param=name.split(" ", 1)[0],
        )
    if any(t.capabilities.full_chat for t in route.targets):
        return
    wanted = needs(request)
    if not wanted and all(t.capabilities.chat for t in route.targets):
        return
    unmet = [first_unmet(t.capabilities, wanted) for t in route.targets]
    missing = next((need for need in unmet if need is not None), None)
    if missing is not None and all(need is not None for need in unmet):
        raise UnsupportedFeature(
            f"The model '{request.model}' does not support {missing.feature}.", param=missing.param
        )
