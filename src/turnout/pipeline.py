"""The request lifecycle, in the order the product promises it:

    authenticate → authorise model → admit (limits) → reserve budget → route → respond → settle

Each step is one call to the service that owns it; the web edge supplies an `Inbound` (the
request) and a `Responder` (how to answer), so nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from turnout.domain.chat import ChatRequest, parse_chat_request
from turnout.domain.embeddings import parse_embedding_request
from turnout.domain.errors import (
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RouteNotFound,
    TurnoutError,
    UnsupportedFeature,
)
from turnout.domain.media import CAPABILITY, WHAT, ImageRequest, MediaApi, SpeechRequest, TranscriptionRequest
from turnout.domain.moderation import ModerationRequest, model_of, parse_moderation_request
from turnout.domain.principal import Principal
from turnout.domain.rate_limits import Quota, RateLimited
from turnout.domain.request_features import request_features
from turnout.domain.rerank import RerankRequest, parse_rerank_request
from turnout.domain.usage import Usage
from turnout.keys.index import KeyIndex
from turnout.limits.admission import Admission, Ticket
from turnout.observability.tracing import Answer as TracedAnswer
from turnout.observability.tracing import RequestTrace, Tracer
from turnout.presets.registry import PREFIX as PRESET_PREFIX
from turnout.presets.registry import Preset, PresetRegistry
from turnout.providers.base import ChatResult, MediaResult, NativeRequest
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.passage import DROPPED_ANSWER_HEADERS, USAGE_BODY_LIMIT, Passage
from turnout.request_logs.capture import Answer, Captured
from turnout.request_logs.service import RequestLog
from turnout.routing.capabilities import first_unmet, needs
from turnout.routing.catalog import PASSTHROUGH_PREFIX, Catalog, Route
from turnout.routing.generation import Generation
from turnout.routing.mirror import Mirrors
from turnout.routing.relay import RelayStream
from turnout.routing.router import Router
from turnout.routing.tasks import require
from turnout.routing.values import AttemptRecord, Call, Served, Steering
from turnout.spend.billing import Billing, CreditHold, PresetCharge
from turnout.spend.budget_values import Reservation
from turnout.spend.budgets import Budgets
from turnout.spend.ledger import Outcome
from turnout.spend.recorder import SpendRecorder
from turnout.spend.request_bound import RequestBound

# how long a request refused by a `parallel` limit in Redis waits before it is asked once more:
# longer than another instance takes to give a finished request's place back (its loop's next turn)
PLACE_RECHECK = 0.05
_MODEL_NAME = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,255}$")


class Inbound(Protocol):
    @property
    def request_id(self) -> str:
        """turnout's id for the request: the ledger's key, the x-request-id header."""
        ...

    @property
    def api(self) -> str:
        """The API it came in through: chat, messages or responses (for the ledger)."""
        ...

    def credential(self) -> str | None: ...

    def steering(self) -> Steering: ...

    def trace_context(self) -> tuple[str | None, str | None]:
        """The client's `traceparent` and `tracestate` (W3C trace context), if it sent them."""
        ...

    async def json(self) -> Any: ...

    def native(self) -> NativeRequest | None:
        """The request in the client's own wire format, for deployments that speak it."""
        ...

    def rate_limited(self, quota: Quota) -> None:
        """The rate limits the request was admitted under, for its answer's headers."""
        ...


class Answerer(Protocol):
    """Where an answer in one JSON body goes (embeddings, rerank, moderations)."""

    async def answer(self, body: bytes, served: Served) -> None: ...


class Responder(Answerer, Protocol):
    async def answer_chat(self, result: ChatResult, served: Served) -> None:
        """A chat answer, written in the client's API (its typed form read, or its bytes sent)."""
        ...

    async def answer_native(self, body: bytes, served: Served) -> None:
        """The upstream's own answer to the native request, passed on as it is."""
        ...

    async def stream(self, stream: RelayStream, served: Served) -> None:
        """Relay the stream, framed for the client's API (the stream accounts for itself before
        its end reaches the client)."""
        ...


class MediaInbound(Protocol):
    """An image, transcription or speech request as the edge reads it (JSON, or a form)."""

    @property
    def request_id(self) -> str: ...

    def credential(self) -> str | None: ...

    def steering(self) -> Steering: ...

    def trace_context(self) -> tuple[str | None, str | None]: ...

    async def media_request(
        self,
    ) -> tuple[ImageRequest | TranscriptionRequest | SpeechRequest, dict[str, Any]]:
        """The typed request and the body it came in (a form's: {})."""
        ...

    def rate_limited(self, quota: Quota) -> None: ...


class MediaResponder(Protocol):
    async def answer_media(self, result: MediaResult, served: Served) -> None:
        """The answer as the provider gave it: its bytes, or its audio streamed through."""
        ...


class PassthroughInbound(Protocol):
    """A pass-through request as the edge reads it: the path (as sent) and query under the
    provider's base URL, the client's headers a pass-through carries on, its body (any type)."""

    @property
    def request_id(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def query(self) -> str: ...

    def credential(self) -> str | None: ...

    def headers(self) -> list[tuple[str, str]]: ...

    async def body(self) -> bytes: ...

    def rate_limited(self, quota: Quota) -> None:
        """The rate limits the request was admitted under, for its answer's headers."""
        ...


class RateLimitedInbound(Protocol):
    def rate_limited(self, quota: Quota) -> None: ...


class PassthroughResponder(Protocol):
    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The answer's status and headers (the upstream's, those a pass-through passes back)."""
        ...

    async def write(self, chunk: bytes, more: bool) -> None: ...


class Pipeline:
    def __init__(
        self,
        keys: KeyIndex,
        catalog: Catalog,
        router: Router,
        admission: Admission,
        budgets: Budgets,
        spend: SpendRecorder,
        billing: Billing,
        presets: PresetRegistry,
        request_log: RequestLog | None = None,
    ) -> None:
        self.keys = keys
        self.current = Generation(catalog, router)
        self.admission = admission
        self.budgets = budgets
        self.spend = spend
        self.billing = billing
        self.presets = presets
        self.request_log = request_log
        self.tracer: Tracer | None = None  # set when traces are exported (None: tracing off)
        self.mirrors = Mirrors({}, _nothing_spent)  # the aliases' shadow traffic (routing/mirror.py)

    @property
    def catalog(self) -> Catalog:
        return self.current.catalog

    @property
    def router(self) -> Router:
        return self.current.router

    def switch(self, catalog: Catalog, router: Router) -> Generation:
        """Route new requests with `catalog` and `router` (a reloaded configuration's); those in
        flight finish on what they began with: the generation returned, which tells when the last
        of them has ended."""
        retired, self.current = self.current, Generation(catalog, router)
        return retired

    def _trace(self, operation: str, inbound: Inbound) -> RequestTrace:
        assert self.tracer is not None
        return self.tracer.request(operation, inbound.request_id, *inbound.trace_context())

    async def chat_completion(self, inbound: Inbound, respond: Responder) -> None:
        generation = self.current  # the configuration this request is served with, to its end
        generation.enter()
        trace = None if self.tracer is None else self._trace("chat", inbound)
        failure: BaseException | None = None
        try:
            await self._chat_completion(generation, inbound, respond, trace)
        except BaseException as error:
            failure = error
            raise
        finally:
            generation.leave()
            if trace is not None:
                trace.end(failure)

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
                user_id=principal.user_id,
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

    async def cut_short(self) -> set[asyncio.Task[Any]]:
        """The shutdown's grace ran out: end every stream being relayed (its client told why), and
        have whatever else is cancelled from now on recorded as cut short by the shutdown (503
        `gateway_shutdown`), not as a client that left. Returns the tasks relaying the streams."""
        return await self.router.in_flight.cut_short()

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
        generation = self.current
        generation.enter()
        trace = None if self.tracer is None else self._trace("embeddings", inbound)
        failure: BaseException | None = None
        try:
            await self._embeddings(generation, inbound, respond, trace)
        except BaseException as error:
            failure = error
            raise
        finally:
            generation.leave()
            if trace is not None:
                trace.end(failure)

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
        self.spend.admit()
        ticket, reservation, hold = await self._admit(inbound, principal, route)
        outcome = Outcome()
        account = self._accountant(
            outcome, inbound.request_id, "embeddings", principal, route, False, ticket, trace
        )
        try:
            result, outcome.served = await generation.router.embed(call, outcome.tally)
            account(None)
            await respond.answer(result.body, outcome.served)
        except BaseException as error:
            outcome.failed(error, self.router.in_flight.cancelled())
            raise
        finally:
            account(None)
            self._settle(outcome, reservation, hold, ticket)

    async def media(self, inbound: MediaInbound, respond: MediaResponder, api: MediaApi) -> None:
        """An image generation, transcription or speech request (`api`): admitted, budgeted (at the
        most its images, seconds of audio or characters can cost), routed to a deployment whose
        model does it, and accounted by what the provider says it made."""
        generation = self.current
        generation.enter()
        trace = (
            None
            if self.tracer is None
            else self.tracer.request(api, inbound.request_id, *inbound.trace_context())
        )
        failure: BaseException | None = None
        try:
            await self._media(generation, inbound, respond, api, trace)
        except BaseException as error:
            failure = error
            raise
        finally:
            generation.leave()
            if trace is not None:
                trace.end(failure)

    async def rerank(self, inbound: Inbound, respond: Answerer) -> None:
        await self._task("rerank", inbound, respond, self._rerank)

    async def moderations(self, inbound: Inbound, respond: Answerer) -> None:
        await self._task("moderations", inbound, respond, self._moderations)

    async def _task(
        self,
        operation: str,
        inbound: Inbound,
        respond: Answerer,
        serve: Callable[[Generation, Inbound, Answerer, RequestTrace | None], Awaitable[None]],
    ) -> None:
        """Serve a request of an API other than chat on the configuration it began with, traced."""
        generation = self.current
        generation.enter()
        trace = None if self.tracer is None else self._trace(operation, inbound)
        failure: BaseException | None = None
        try:
            await serve(generation, inbound, respond, trace)
        except BaseException as error:
            failure = error
            raise
        finally:
            generation.leave()
            if trace is not None:
                trace.end(failure)

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
        access = None if principal.allowed_models is None else principal.may_use
        if trace is not None:
            trace.requested(request.model, {}, None)
        call = Call(route, request, body, inbound.steering(), access=access, trace=trace)
        self.spend.admit()
        ticket, reservation, hold = await self._admit(inbound, principal, route, units=request.units())
        outcome = Outcome()
        account = self._accountant(outcome, inbound.request_id, api, principal, route, False, ticket, trace)
        try:
            result, outcome.served = await generation.router.media(call, outcome.tally, api)
            try:
                if result.chunks is None:
                    account(None)  # accounted for before the client can see the answer
                await respond.answer_media(result, outcome.served)
            finally:
                await result.aclose()  # (speech: the upstream's connection, however the answer ended)
        except BaseException as error:
            outcome.failed(error, self.router.in_flight.cancelled())
            raise
        finally:
            account(None)
            self._settle(outcome, reservation, hold, ticket)

    async def _rerank(
        self, generation: Generation, inbound: Inbound, respond: Answerer, trace: RequestTrace | None
    ) -> None:
        principal = await self.keys.resolve(inbound.credential())
        body = await inbound.json()
        request = parse_rerank_request(body)
        route = self.authorise(principal, request.model, generation.catalog)
        require(route, "rerank", request.model)
        call = self._task_call(principal, route, request, body, inbound, trace, request.model)

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
        call = self._task_call(principal, route, request, body, inbound, trace, model)

        async def run(tally: list[AttemptRecord]) -> tuple[bytes, Served]:
            result, served = await generation.router.moderate(call, tally)
            return result.body, served

        await self._serve(inbound, respond, principal, route, "moderations", trace, run)

    @staticmethod
    def _task_call(
        principal: Principal,
        route: Route,
        request: RerankRequest | ModerationRequest,
        body: dict[str, Any],
        inbound: Inbound,
        trace: RequestTrace | None,
        model: str,
    ) -> Call:
        if trace is not None:
            trace.requested(model, {}, None)
        access = None if principal.allowed_models is None else principal.may_use
        return Call(route, request, body, inbound.steering(), access=access, trace=trace)

    async def _serve(
        self,
        inbound: Inbound,
        respond: Answerer,
        principal: Principal,
        route: Route,
        api: str,
        trace: RequestTrace | None,
        run: Callable[[list[AttemptRecord]], Awaitable[tuple[bytes, Served]]],
        searches: int = 0,
    ) -> None:
        """Admit, budget (`searches`: a rerank request's search units, reserved at their price),
        route and account a request answered in one JSON body (rerank, moderations): recorded in
        the ledger before the client has the answer."""
        self.spend.admit()
        ticket, reservation, hold = await self._admit(inbound, principal, route, searches=searches)
        outcome = Outcome()
        account = self._accountant(outcome, inbound.request_id, api, principal, route, False, ticket, trace)
        try:
            body, outcome.served = await run(outcome.tally)
            account(None)
            await respond.answer(body, outcome.served)
        except BaseException as error:
            outcome.failed(error, self.router.in_flight.cancelled())
            raise
        finally:
            account(None)
            self._settle(outcome, reservation, hold, ticket)

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

    async def _admit(
        self,
        inbound: RateLimitedInbound,
        principal: Principal,
        route: Route,
        request: ChatRequest | None = None,
        searches: int = 0,
        units: Usage | None = None,
    ) -> tuple[Ticket, Reservation, CreditHold]:
        """`_admit_once`, asked once more after PLACE_RECHECK when Redis found no free place under a
        `parallel` limit: another instance gives a finished request's place back at its event
        loop's next turn, so a client's next request through another instance may arrive first."""
        try:
            return await self._admit_once(inbound, principal, route, request, searches, units)
        except RateLimited as refusal:
            if not refusal.recheck:
                raise
        await asyncio.sleep(PLACE_RECHECK)
        return await self._admit_once(inbound, principal, route, request, searches, units)

    async def _admit_once(
        self,
        inbound: RateLimitedInbound,
        principal: Principal,
        route: Route,
        request: ChatRequest | None = None,
        searches: int = 0,
        units: Usage | None = None,
    ) -> tuple[Ticket, Reservation, CreditHold]:
        """The request's rate limits decided (with Redis: in the budgets' script run when budgets
        cover it, else in the limits' own), its maximum cost reserved in its budgets and held on a
        prepaid team's credit (before any provider is called); any refusal gives back what was
        taken."""
        try:
            ticket = self.admission.admit(principal, route, request)
        except RateLimited as error:
            if error.quota is not None:
                inbound.rate_limited(error.quota)  # the refusal shows the limit it hit
            raise
        try:
            reservation = await self.budgets.reserve(principal, route, request, ticket, searches, units)
        except BaseException as error:
            self._refused(inbound, ticket, error)
            raise
        try:
            if ticket.pending:
                await self.admission.confirm(ticket)
        except BaseException as error:
            self.budgets.release(reservation)
            self._refused(inbound, ticket, error)
            raise
        if ticket.quota is not None:
            inbound.rate_limited(ticket.quota)
        try:
            bound = reservation.bound
            if bound is None and (searches or units is not None):  # (no budget covers it: a prepaid
                bound = RequestBound(route, None, 0, searches, units)  # team's hold is bounded here)
            return ticket, reservation, await self.billing.hold(principal, route, request, bound)
        except BaseException:
            ticket.release()
            self.budgets.release(reservation)
            raise

    async def admit_uncharged(
        self, inbound: RateLimitedInbound, principal: Principal, route: Route
    ) -> Ticket:
        """Admission for a request that uses no tokens and costs nothing (counting a prompt's
        tokens): it counts in the request limits (rpm, rpd, parallel), reserves no tokens and no
        budget (asked once more as `_admit` is). The caller settles the ticket when it ends."""
        try:
            return await self._admit_requests(inbound, principal, route)
        except RateLimited as refusal:
            if not refusal.recheck:
                raise
        await asyncio.sleep(PLACE_RECHECK)
        return await self._admit_requests(inbound, principal, route)

    async def _admit_requests(
        self, inbound: RateLimitedInbound, principal: Principal, route: Route
    ) -> Ticket:
        try:
            ticket = self.admission.admit(principal, route, tokens=False)
        except RateLimited as error:
            if error.quota is not None:
                inbound.rate_limited(error.quota)
            raise
        try:
            await self.admission.confirm(ticket)
        except BaseException as error:
            self._refused(inbound, ticket, error)
            raise
        if ticket.quota is not None:
            inbound.rate_limited(ticket.quota)
        return ticket

    @staticmethod
    def _refused(inbound: RateLimitedInbound, ticket: Ticket, error: BaseException) -> None:
        ticket.release()
        if isinstance(error, RateLimited) and error.quota is not None:
            inbound.rate_limited(error.quota)  # the refusal shows the limit it hit

    def _settle(self, outcome: Outcome, reservation: Reservation, hold: CreditHold, ticket: Ticket) -> None:
        """Replace the reservation, the hold and the token limits' estimate by what the request
        used and was charged."""
        usage = outcome.usage
        ticket.settle(0 if usage is None else usage.input_tokens + usage.output_tokens)  # if not yet
        self.billing.release(hold, outcome.charged)
        self.budgets.settle(
            reservation, outcome.usage, answered=outcome.served is not None, cost=outcome.billed
        )

    def _accountant(
        self,
        outcome: Outcome,
        request_id: str,
        api: str,
        principal: Principal,
        route: Route,
        stream: bool,
        ticket: Ticket,
        trace: RequestTrace | None = None,
    ) -> Callable[..., None]:
        """Record the request in the ledger once, an entry per upstream attempt: as soon as the
        answer is complete (before the client sees it complete), or when the request ends without
        one (failed, or the client left: 499); the metrics and the trace take it from there. Its
        rate-limit ticket is settled then too, so a client that sends its next request once it has
        the answer finds its place free."""

        def account(relay: RelayStream | None, result: ChatResult | None = None) -> None:
            if outcome.recorded:
                return
            outcome.recorded = True
            if relay is not None and relay.abandoned:
                outcome.left()
            entries = outcome.entries(request_id, api, principal, route, stream=stream, billing=self.billing)
            served = outcome.served
            record = None if served is None else served.record
            first = None if relay is None else relay.first_output_at
            self.spend.record_request(
                entries,
                outcome.status,
                0 if record is None else record.number,
                outcome.elapsed,
                None if first is None else first - outcome.started,
                trace,
                None if trace is None or record is None else answer_of(relay, result, trace.captures_content),
            )
            usage = outcome.usage
            ticket.settle(0 if usage is None else usage.input_tokens + usage.output_tokens)

        return account

    def authenticate(self, inbound: Inbound) -> Principal:
        """In memory only: a key this instance does not know yet is refused."""
        return self.keys.authenticate(inbound.credential())

    async def resolve(self, inbound: Inbound) -> Principal:
        """The caller, asking the key store about a key issued on another instance."""
        return await self.keys.resolve(inbound.credential())

    def authorise(self, principal: Principal, model: str, catalog: Catalog | None = None) -> Route:
        """The route for `model`, if it exists and the caller may use it (404 either way, so a key
        cannot probe for models it is not allowed to see)."""
        if not _MODEL_NAME.match(model):
            raise InvalidRequest("'model' must be 1-256 printable characters.", param="model")
        route = (self.current.catalog if catalog is None else catalog).resolve(model)
        if route is None or (not principal.may_use(route.alias) and not principal.may_use(model)):
            raise ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return route

    def visible(self, principal: Principal, name: str) -> bool:
        route = self.catalog.resolve(name)
        return route is not None and (principal.may_use(route.alias) or principal.may_use(name))


async def _nothing_spent(alias: str, since: Any) -> int:
    return 0


def answer_of(relay: RelayStream | None, result: ChatResult | None, content: bool) -> TracedAnswer | None:
    """What a chat answer says of itself, for its trace: its id, model and finish reasons (and its
    text, when `content`) — from a stream's accumulator, or a complete answer read typed."""
    if relay is not None:
        folded = relay.answer
        reasons = () if folded.finish_reason is None else (folded.finish_reason,)
        return TracedAnswer(folded.id, folded.model, reasons, folded.text() if content else None)
    if result is None:
        return None
    try:
        completion = result.typed()
    except TurnoutError:  # an answer in the provider's own format (passed through as it is)
        return None
    finished = tuple(c.finish_reason for c in completion.choices if c.finish_reason)
    text = "".join(result.texts()) if content else None
    return TracedAnswer(completion.id, completion.model, finished, text)


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
